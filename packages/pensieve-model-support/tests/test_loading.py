import json

import pytest

from pensieve_model_support import HubUnavailableError, HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.loading import local_path
from pensieve_model_support.testing import FakeHub


def test_loads_a_local_mlx_directory(tiny_model_dir):
    loaded = load_model(resolve_reference(str(tiny_model_dir)), HuggingFaceHub())
    assert loaded.context_length == 4096
    assert loaded.tokenizer.has_chat_template
    assert loaded.name == tiny_model_dir.name


def test_hub_model_is_downloaded_once_then_served_from_cache(tiny_model_dir, tmp_path):
    hub = FakeHub(tmp_path / "cache", {"someone/tiny": tiny_model_dir})
    ref = resolve_reference("someone/tiny")
    first = load_model(ref, hub)
    second = load_model(ref, hub)
    assert hub.downloads == ["someone/tiny"]
    assert first.context_length == second.context_length == 4096


def test_unreachable_hub_and_empty_cache_raise(tmp_path):
    hub = FakeHub(tmp_path / "cache", reachable=False)
    with pytest.raises(HubUnavailableError):
        load_model(resolve_reference("someone/tiny"), hub)
    with pytest.raises(HubUnavailableError, match="not in the Hugging Face cache"):
        local_path(resolve_reference("someone/tiny"), hub, download=False)


def test_real_hub_client_finds_a_snapshot_in_the_standard_cache_layout(tmp_path):
    # The standard HF cache layout, written by hand: no network involved.
    repo = tmp_path / "models--owner--name"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    hub = HuggingFaceHub(cache_dir=tmp_path)
    assert hub.cached("owner/name") == snapshot
    assert hub.cached("owner/other") is None


def test_a_model_that_cannot_fit_is_refused_before_loading(tiny_model_dir):
    from pensieve_core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"needs about 0\.\d GB for its weights; this \w+ device has 0\.0 GB"):
        load_model(resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), memory_budget_bytes=1000)


def test_a_directory_without_weights_is_a_load_error(tmp_path):
    from pensieve_core.errors import ModelLoadError

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="no safetensors or GGUF weights"):
        load_model(resolve_reference(str(tmp_path)), HuggingFaceHub())
