"""GGUF types MLX does not read right are decoded by gguf.quants and brought into MLX's format
(grid kept, or re-quantized at the widths in `convert.MLX_BITS`); these tests hold the reading,
the choice of widths and the loaded model to the gguf package's own decoding."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, quants
from mlx.utils import tree_map_with_path

from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.gguf import GGUFContents
from pensieve_model_support.gguf.architectures import architecture_module
from pensieve_model_support.gguf.convert import (
    CONVERTED,
    GROUP_SIZE,
    MLX_BITS,
    REQUANTIZED,
    convert_tensor,
    dequantize,
    pack,
)
from pensieve_model_support.gguf.loader import build_model
from pensieve_model_support.gguf.testing import build_tiny_gguf, random_blocks

# The bit width each source format nominally has (its codes), before sub-block scales.
SOURCE_BITS = {"Q2_K": 2, "Q3_K": 3, "Q4_K": 4, "Q5_K": 5, "Q6_K": 6, "Q5_0": 5, "Q5_1": 5, "IQ4_NL": 4, "IQ4_XS": 4}
MLX_WIDTHS = (2, 3, 4, 5, 6, 8)


def rms_relative(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.sqrt(np.mean((approx - exact) ** 2) / np.mean(exact**2)))


def requantized(ref: np.ndarray, bits: int) -> np.ndarray:
    w = mx.array(ref)
    return np.array(mx.dequantize(*mx.quantize(w, GROUP_SIZE, bits), group_size=GROUP_SIZE, bits=bits))


@pytest.fixture(scope="module")
def own_error():
    """The error an affine format of b bits (group 32) makes on Gaussian weights: what a source
    format of that width would suggest."""
    g = np.random.default_rng(1).standard_normal((64, 4096)).astype(np.float32)
    return {b: rms_relative(requantized(g, b), g) for b in MLX_WIDTHS}


@pytest.mark.parametrize("kind", CONVERTED)
def test_tensors_read_from_the_file_decode_bit_for_bit_as_gguf_quants(tmp_path, kind):
    blocks = random_blocks(np.random.default_rng(2), kind, 8, 8192)  # 256 super-blocks, 2048 of 32
    path = tmp_path / "one.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tensor("t.weight", blocks, raw_dtype=GGMLQuantizationType[kind])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (tensor,) = GGUFReader(str(path)).tensors
    ours = dequantize(tensor.data, kind)
    reference = quants.dequantize(blocks, GGMLQuantizationType[kind])
    assert ours.shape == (8, 8192) and np.isfinite(reference).all()
    assert np.array_equal(ours.view(np.uint32), reference.view(np.uint32))


def test_q4_k_odd_sub_blocks_use_their_own_scale():
    """The decoding MLX 0.32.4 gets wrong: sub-block 1 must take scale byte 1, not byte 0's."""
    block = np.zeros((1, 144), np.uint8)
    block[0, 0:2] = np.array([1.0], np.float16).view(np.uint8)  # d = 1, dmin = 0
    block[0, 4:6] = (2, 5)  # 6-bit scales of sub-blocks 0 and 1
    block[0, 16:48] = 0x11  # code 1 in sub-blocks 0 (low nibbles) and 1 (high nibbles)
    values = dequantize(block, "Q4_K")[0]
    assert (values[:32] == 2).all() and (values[32:64] == 5).all()


@pytest.mark.parametrize("bits", MLX_WIDTHS)
def test_codes_are_packed_as_mlx_packs_them(bits):
    w = mx.random.normal((4, 256), key=mx.random.key(bits))
    packed, scales, biases = mx.quantize(w, GROUP_SIZE, bits)
    values = np.array(mx.dequantize(packed, scales, biases, GROUP_SIZE, bits)).reshape(4, -1, GROUP_SIZE)
    codes = np.rint((values - np.array(biases)[..., None]) / np.array(scales)[..., None]).astype(np.uint8)
    assert np.array_equal(pack(codes.reshape(4, 256), bits), np.array(packed))


def _converted(kind: str, rows: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The converted weights back in float32, and gguf.quants' decoding of the same blocks."""
    blocks = random_blocks(np.random.default_rng(3), kind, rows, 4096)
    converted, bits = convert_tensor(blocks, kind), MLX_BITS[kind]
    assert converted["weight"].shape == (rows, 4096 * bits // 32)
    back = mx.dequantize(converted["weight"], converted["scales"], converted["biases"], GROUP_SIZE, bits)
    return np.array(back.astype(mx.float32)), dequantize(blocks, kind)


@pytest.mark.parametrize("kind", [k for k in MLX_BITS if k not in REQUANTIZED])
def test_types_with_groups_of_32_keep_their_grid(kind):
    """Only float16 rounding is lost (bf16 weights would lose 1.7e-3); a code off by one would
    be off by a whole step, more than a quarter of the finest step a grid of that width has."""
    back, ref = _converted(kind)
    assert rms_relative(back, ref) < 1e-3
    assert np.abs(back - ref).max() < np.abs(ref).max() / 2 ** (MLX_BITS[kind] + 2)


@pytest.mark.parametrize("kind", REQUANTIZED)
def test_requantized_types_add_under_half_the_source_formats_own_error(kind, own_error):
    """The width chosen is the smallest MLX width that adds at most half the source's error."""
    back, ref = _converted(kind)
    bound = own_error[SOURCE_BITS[kind]] / 2
    assert rms_relative(back, ref) < bound
    narrower = [b for b in MLX_WIDTHS if SOURCE_BITS[kind] <= b < MLX_BITS[kind]]
    assert all(rms_relative(requantized(ref, b), ref) >= bound for b in narrower)


def _logits(model: nn.Module, ids: list[int]) -> np.ndarray:
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def _greedy(model: nn.Module, ids: list[int], steps: int = 8) -> list[int]:
    for _ in range(steps):
        ids = [*ids, int(np.argmax(_logits(model, ids)[-1]))]
    return ids


def _float_reference(path) -> tuple[nn.Module, dict[str, str]]:
    """The same model built from gguf.quants' float32 decoding of every tensor."""
    reader = GGUFReader(str(path))
    weights = {t.name: mx.array(dequantize(t.data, t.tensor_type.name)) for t in reader.tensors}
    metadata = {k: f.contents() for k, f in reader.fields.items()}
    model, _ = build_model(GGUFContents(weights=weights, metadata=metadata))
    return model, {t.name: t.tensor_type.name for t in reader.tensors}


def _requantize_like_the_conversion(model: nn.Module, types: dict[str, str]) -> None:
    """Re-quantize the REQUANTIZED types' layers as the conversion does; the rest stay float."""
    arch = architecture_module("llama")
    bits = {arch.tensor_name(n).removesuffix(".weight"): MLX_BITS[k] for n, k in types.items() if k in REQUANTIZED}
    nn.quantize(
        model, class_predicate=lambda p, _m: {"group_size": GROUP_SIZE, "bits": bits[p]} if p in bits else False
    )
    # The conversion keeps scales in float16, as mx.load does.
    half = lambda path, a: a.astype(mx.float16) if path.endswith(("scales", "biases")) else a
    model.update(tree_map_with_path(half, model.parameters()))


PROMPT = "The capital of France is Paris, and the capital of Italy is Rome."


def test_a_q4_k_gguf_answers_as_its_float_weights(tmp_path):
    """MLX's own Q4_K decoding is 0.34 off here; ours keeps the grid, off by float16 rounding."""
    path = build_tiny_gguf(tmp_path / "q4_k.gguf", "Q4_K", layers=2)
    loaded = load_model(resolve_reference(str(path)), HuggingFaceHub())
    assert loaded.model.model.layers[1].mlp.down_proj.bits == 4
    reference, _ = _float_reference(path)
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    assert rms_relative(_logits(loaded.model, ids), _logits(reference, ids)) < 0.01
    assert _greedy(loaded.model, ids) == _greedy(reference, ids)


def test_a_gguf_mixing_every_converted_type_answers_as_its_weights_requantized(tmp_path):
    path = build_tiny_gguf(tmp_path / "mixed.gguf", CONVERTED, layers=2)
    loaded = load_model(resolve_reference(str(path)), HuggingFaceHub())
    modules = [m for layer in loaded.model.model.layers for m in _block_modules(layer)]
    assert [m.bits for m in modules] == [MLX_BITS[CONVERTED[i % len(CONVERTED)]] for i in range(14)]

    reference, types = _float_reference(path)
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    float_logits = _logits(reference, ids)
    _requantize_like_the_conversion(reference, types)
    assert rms_relative(_logits(loaded.model, ids), _logits(reference, ids)) < 0.01
    assert _greedy(loaded.model, ids) == _greedy(reference, ids)
    # Q2_K's own 10% and Q3_K's 7% re-quantization error dominate the distance to the float model.
    assert rms_relative(_logits(loaded.model, ids), float_logits) < 0.1


def _block_modules(layer: nn.Module) -> list[nn.Module]:
    a, m = layer.self_attn, layer.mlp
    return [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
