"""A GGUF that needs converting is converted once: the result is kept under the home, the next
load memory-maps it without converting, and a kept copy that is damaged or stale is never used."""

import logging
import os

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.gguf import convert, converted_store
from pensieve_model_support.gguf.convert import CONVERTED, open_gguf
from pensieve_model_support.gguf.testing import build_tiny_gguf

PROMPT = "The capital of France is Paris"


@pytest.fixture
def converter_calls(monkeypatch):
    calls = []
    real = convert.read_converted

    def spy(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr("pensieve_model_support.gguf.reader.read_converted", spy)
    return calls


def _load(path, root):
    return load_model(resolve_reference(str(path)), HuggingFaceHub(), converted_dir=root)


def _logits(loaded):
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    return np.array(loaded.model(mx.array([ids]))[0].astype(mx.float32))


def test_the_second_load_reads_the_kept_copy_without_converting(tmp_path, converter_calls):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", ["Q4_K", "Q6_K"], layers=2)
    root = tmp_path / "converted"
    first = _load(gguf, root)
    (kept,) = root.glob("*/model.safetensors")
    assert kept == converted_store.converted_path(root, gguf) and len(converter_calls) == 1
    second = _load(gguf, root)
    assert len(converter_calls) == 1
    assert second.model.model.layers[0].self_attn.k_proj.bits == 8  # Q6_K's width survives
    np.testing.assert_array_equal(_logits(first), _logits(second))
    assert not list(root.glob("*/.tmp-*"))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _bad_header(path):
    data = bytearray(path.read_bytes())
    data[12:20] = b"\xff" * 8
    path.write_bytes(bytes(data))


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _bad_header, _empty])
def test_a_damaged_copy_is_a_logged_miss_and_is_converted_again(tmp_path, converter_calls, caplog, damage):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    root = tmp_path / "converted"
    expected = _logits(_load(gguf, root))
    kept = converted_store.converted_path(root, gguf)
    damage(kept)
    with caplog.at_level(logging.INFO, "pensieve.converted"):
        again = _load(gguf, root)
    assert len(converter_calls) == 2
    assert any("converted_weights_corrupt" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(_logits(again), expected)
    converted_store.read_header(kept)  # rewritten whole


def test_a_copy_of_other_shapes_is_not_used(tmp_path, converter_calls):
    """A well-formed safetensors file that is not this GGUF converted (e.g. a stale converter's)."""
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    kept = converted_store.converted_path(tmp_path / "converted", gguf)
    kept.parent.mkdir(parents=True)
    mx.save_safetensors(str(kept), {"token_embd.weight": mx.zeros((4, 4))})
    _load(gguf, tmp_path / "converted")
    assert len(converter_calls) == 1
    assert "token_embd.scales" in converted_store.read_header(kept)[0]


def test_a_touched_gguf_is_a_new_identity_and_replaces_the_old_copy(tmp_path, converter_calls):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    root = tmp_path / "converted"
    _load(gguf, root)
    old = converted_store.converted_path(root, gguf)
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    new = converted_store.converted_path(root, gguf)
    assert new != old
    _load(gguf, root)
    assert len(converter_calls) == 2
    assert [f.path for f in converted_store.list_converted(root)] == [new]


def test_the_identity_covers_the_converter_version(tmp_path, monkeypatch):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    before = converted_store.source_identity(gguf)
    monkeypatch.setattr(converted_store, "CONVERTER_VERSION", "test-next")
    assert converted_store.source_identity(gguf) != before


def test_the_layout_from_the_header_is_what_conversion_gives(tmp_path):
    gguf = build_tiny_gguf(tmp_path / "mixed.gguf", [*CONVERTED, "F16"], layers=2)
    weights, _ = convert.read_converted(gguf)
    names = {mx.uint32: "U32", mx.float16: "F16", mx.float32: "F32", mx.bfloat16: "BF16"}
    got = {k: (names[v.dtype], tuple(v.shape)) for k, v in weights.items()}
    assert convert.converted_layout(open_gguf(gguf)) == got


def test_a_failed_save_is_logged_and_the_model_still_loads(tmp_path, converter_calls, caplog):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    root = tmp_path / "converted"
    root.write_text("a file where the directory should be")
    with caplog.at_level(logging.WARNING, "pensieve.converted"):
        loaded = _load(gguf, root)
    assert loaded.model is not None
    assert any("converted_weights_save_failed" in r.getMessage() for r in caplog.records)


def test_list_and_clear(tmp_path):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    root = tmp_path / "converted"
    _load(gguf, root)
    (entry,) = converted_store.list_converted(root)
    assert entry.source == str(gguf.resolve()) and not entry.problem and entry.size_bytes > 0
    _truncate(entry.path)
    (entry,) = converted_store.list_converted(root)
    assert "truncated" in entry.problem
    assert converted_store.clear_converted(root)[0] == 1
    assert converted_store.list_converted(root) == [] and not any(root.iterdir())


def test_the_fit_check_uses_the_size_after_conversion(tmp_path):
    """Q2_K becomes 3-bit codes plus a float16 scale and bias per 32: wider in memory than on disk."""
    from pensieve_core.errors import ModelLoadError

    gguf = build_tiny_gguf(tmp_path / "q2_k.gguf", "Q2_K", hidden_size=1024, layers=4)
    layout = convert.converted_layout(open_gguf(gguf)).values()
    converted = sum(int(np.prod(shape)) * convert.ITEM_BYTES[dtype] for dtype, shape in layout)
    assert converted > gguf.stat().st_size
    with pytest.raises(ModelLoadError, match=f"needs about {converted / 1e9:.1f} GB"):
        load_model(resolve_reference(str(gguf)), HuggingFaceHub(), memory_budget_bytes=gguf.stat().st_size + 1)


def test_the_loaded_size_is_the_converted_arrays_first_and_second_time(tmp_path):
    gguf = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K")
    first = _load(gguf, tmp_path / "converted")
    arrays = sum(v.nbytes for _, v in tree_flatten(first.model.parameters()))
    assert first.weights_bytes == arrays == _load(gguf, tmp_path / "converted").weights_bytes
