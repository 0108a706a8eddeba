import json
import re
from pathlib import Path

import pytest

from pensieve_core.errors import ModelNotFoundError
from pensieve_model_support import (
    HuggingFaceHub,
    lmstudio_models,
    lmstudio_root,
    load_model,
    ollama_models,
    resolve_reference,
    summarize_gguf,
)
from pensieve_model_support.gguf.testing import build_tiny_gguf
from pensieve_model_support.store_testing import write_lmstudio_model, write_ollama_model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-Q8_0.gguf", "Q8_0", hidden_size=64)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fake home: Ollama's store and LM Studio's folder where the tools put them."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / ".pensieve"))
    return tmp_path


@pytest.fixture
def ollama(home, tiny_gguf):
    root = home / ".ollama" / "models"
    write_ollama_model(root, "qwen3-coder", tiny_gguf, tag="30b", parameters={"num_ctx": 8192, "stop": ["<|im_end|>"]})
    write_ollama_model(root, "tiny", tiny_gguf)
    write_ollama_model(root, "tiny", tiny_gguf, namespace="someone", tag="v1", system="Be brief.")
    write_ollama_model(root, "Tiny-GGUF", tiny_gguf, host="hf.co", namespace="bartowski", tag="Q8_0")
    return root


@pytest.fixture
def lmstudio(home, tiny_gguf, tiny_model_dir):
    root = home / ".lmstudio" / "models"
    write_lmstudio_model(root, "lmstudio-community", "Tiny-GGUF", tiny_gguf, "Tiny-Q8_0.gguf")
    write_lmstudio_model(root, "lmstudio-community", "Tiny-GGUF", tiny_gguf, "mmproj-Tiny-F16.gguf")
    write_lmstudio_model(root, "bartowski", "Two-GGUF", tiny_gguf, "Two-Q8_0.gguf")
    write_lmstudio_model(root, "bartowski", "Two-GGUF", tiny_gguf, "Two-Q4_0.gguf")
    write_lmstudio_model(root, "mlx-community", "Tiny-4bit", tiny_model_dir)
    return root


@pytest.mark.parametrize(
    "ref, name, manifest",
    [
        ("ollama:tiny", "tiny:latest", "registry.ollama.ai/library/tiny/latest"),
        ("ollama:qwen3-coder:30b", "qwen3-coder:30b", "registry.ollama.ai/library/qwen3-coder/30b"),
        ("ollama:someone/tiny:v1", "someone/tiny:v1", "registry.ollama.ai/someone/tiny/v1"),
        ("ollama:hf.co/bartowski/Tiny-GGUF:Q8_0", "hf.co/bartowski/Tiny-GGUF:Q8_0", "hf.co/bartowski/Tiny-GGUF/Q8_0"),
    ],
)
def test_ollama_names_resolve_to_the_manifests_gguf_blob(ollama, tiny_gguf, ref, name, manifest):
    digest = next(
        layer["digest"]
        for layer in json.loads((ollama / "manifests" / manifest).read_text())["layers"]
        if layer["mediaType"] == "application/vnd.ollama.image.model"
    )
    resolved = resolve_reference(ref)
    assert (resolved.kind, resolved.store, resolved.name) == ("gguf_file", "ollama", name)
    blob = ollama / "blobs" / digest.replace(":", "-")
    # Through a .gguf-named link in pensieve's home: MLX picks its reader by the suffix.
    assert resolved.path.endswith(".gguf") and Path(resolved.path).resolve() == blob.resolve()


def test_ollama_models_dir_comes_from_the_ollama_models_variable(home, tiny_gguf, monkeypatch):
    root = home / "elsewhere"
    write_ollama_model(root, "moved", tiny_gguf)
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    assert Path(resolve_reference("ollama:moved").path).resolve().parent == (root / "blobs").resolve()


def test_ollama_listing_keeps_template_and_parameters(ollama):
    listed = dict(ollama_models())
    assert set(listed) == {"qwen3-coder:30b", "tiny:latest", "someone/tiny:v1", "hf.co/bartowski/Tiny-GGUF:Q8_0"}
    assert listed["qwen3-coder:30b"].parameters == {"num_ctx": 8192, "stop": ["<|im_end|>"]}
    assert "{{ .Prompt }}" in listed["tiny:latest"].template
    assert listed["someone/tiny:v1"].system == "Be brief."


@pytest.mark.parametrize(
    "ref, message",
    [
        ("ollama:nothing", "not in Ollama's store"),
        ("ollama:tiny:nope", "not in Ollama's store"),
        ("ollama:../../etc", "not a valid name part"),
        ("ollama:../../../etc/passwd:x", "not an Ollama name"),
        ("ollama:../etc:x", "not a valid name part"),
        ("ollama:tiny:..", "not a valid name part"),
        ("ollama:a/b/c/d", "not an Ollama name"),
        ("ollama:", "not an Ollama name"),
        ("lmstudio:../../etc", "not a valid name part"),
        ("lmstudio:lmstudio-community/Tiny-GGUF/../../x.gguf", "not an LM Studio name"),
        ("lmstudio:lmstudio-community/Tiny-GGUF/..", "no GGUF file"),
        ("lmstudio:nobody/nothing", "not in LM Studio's models folder"),
        ("lmstudio:bartowski/Two-GGUF", "holds 2 GGUF files; name one: lmstudio:bartowski/Two-GGUF/Two-Q4_0.gguf"),
        ("lmstudio:lmstudio-community", "not an LM Studio name"),
    ],
)
def test_missing_and_traversing_store_names_are_clear_errors(ollama, lmstudio, ref, message):
    with pytest.raises(ModelNotFoundError, match=re.escape(message)):
        resolve_reference(ref)


def test_a_manifest_whose_blob_is_missing_says_so(ollama):
    for blob in (ollama / "blobs").iterdir():
        blob.unlink()
    with pytest.raises(ModelNotFoundError, match=r"model blob .* is missing"):
        resolve_reference("ollama:tiny")


def test_lmstudio_names_resolve_to_a_gguf_file_or_an_mlx_directory(lmstudio):
    one = resolve_reference("lmstudio:lmstudio-community/Tiny-GGUF")  # the projector beside it is not a model
    assert (one.kind, one.store, one.path) == (
        "gguf_file",
        "lmstudio",
        str(lmstudio / "lmstudio-community/Tiny-GGUF/Tiny-Q8_0.gguf"),
    )
    named = resolve_reference("lmstudio:bartowski/Two-GGUF/Two-Q4_0.gguf")
    assert named.path == str(lmstudio / "bartowski/Two-GGUF/Two-Q4_0.gguf")
    mlx = resolve_reference("lmstudio:mlx-community/Tiny-4bit")
    assert (mlx.kind, mlx.path) == ("mlx_dir", str(lmstudio / "mlx-community/Tiny-4bit"))
    assert [name for name, _ in lmstudio_models()] == [
        "bartowski/Two-GGUF/Two-Q4_0.gguf",
        "bartowski/Two-GGUF/Two-Q8_0.gguf",
        "lmstudio-community/Tiny-GGUF",
        "mlx-community/Tiny-4bit",
    ]


def test_lmstudio_folder_follows_its_settings_and_the_older_location(home, tiny_gguf):
    assert lmstudio_root() == home / ".lmstudio" / "models"
    legacy = home / ".cache" / "lm-studio" / "models"
    legacy.mkdir(parents=True)
    assert lmstudio_root() == legacy
    (home / ".lmstudio").mkdir()
    (home / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(home / "big-disk")}))
    write_lmstudio_model(home / "big-disk", "me", "Mine", tiny_gguf)
    assert resolve_reference("lmstudio:me/Mine").path == str(home / "big-disk" / "me" / "Mine" / tiny_gguf.name)


def test_an_ollama_model_loads(ollama):
    loaded = load_model(resolve_reference("ollama:qwen3-coder:30b"), HuggingFaceHub(), download=False)
    assert loaded.name == "qwen3-coder:30b" and loaded.context_length == 2048
    assert "hi" in loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_summary_says_which_gguf_loads_and_why_not(tmp_path, tiny_gguf):
    good = summarize_gguf(tiny_gguf)
    assert (good.architecture, good.context_length, good.quantization, good.has_chat_template, good.loads) == (
        "llama",
        2048,
        "Q8_0",
        True,
        True,
    )
    bad = summarize_gguf(build_tiny_gguf(tmp_path / "iq2.gguf", "IQ2_XXS", hidden_size=256))
    assert not bad.loads and "IQ2_XXS" in bad.why_not
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    assert "cannot read" in summarize_gguf(tmp_path / "junk.gguf").why_not
