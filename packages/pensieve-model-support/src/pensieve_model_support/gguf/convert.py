"""GGUF tensor types that MLX does not read right (K-quants, Q5_0/Q5_1, IQ4) brought into MLX's own
quantized format (affine, group size 32, float16 scales and biases, as `mx.load` gives Q4_0).

Decoding is the gguf package's vectorized numpy (`gguf.quants`, 140-285 M weights/s here; see
docs/models.md). Types whose groups of 32 share one scale and offset (Q4_K, Q5_K, Q4_0/1, Q5_0/1,
Q8_0) keep their own grid and codes, so only the float16 rounding of the scales is lost. The rest
(16-weight sub-blocks, non-linear IQ4 codebooks) are re-quantized with `mx.quantize` at the smallest
MLX width whose added error, on random blocks, is under half the error a format of the source's
width makes itself (`tests/test_convert.py` holds that rule)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, quants

from pensieve_core.errors import ModelLoadError

GROUP_SIZE = 32
# Bump on any change to what conversion produces: converted copies on disk are keyed by it.
CONVERTER_VERSION = "1"
# Source type → MLX affine bits at group size 32.
MLX_BITS = {
    "Q4_0": 4,
    "Q4_1": 4,
    "Q5_0": 5,
    "Q5_1": 5,
    "Q8_0": 8,
    "Q4_K": 4,
    "Q5_K": 5,  # grid kept
    "Q2_K": 3,
    "Q3_K": 4,
    "Q6_K": 8,
    "IQ4_NL": 5,
    "IQ4_XS": 5,  # re-quantized
}
REQUANTIZED = ("Q2_K", "Q3_K", "Q6_K", "IQ4_NL", "IQ4_XS")
# Types a file must not go through mx.load with (the others MLX reads right).
CONVERTED = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS")
_FLOAT = {"F32": mx.float32, "F16": mx.float16, "BF16": mx.bfloat16}
# Convert a few rows at a time: a 150k-token embedding in float32 would be gigabytes.
_CHUNK_WEIGHTS = 1 << 22


def dequantize(data: np.ndarray, kind: str) -> np.ndarray:
    """Raw GGUF tensor data (rows × bytes for quantized types) → float32 rows × columns."""
    return quants.dequantize(np.asarray(data), GGMLQuantizationType[kind])


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    return blocks[:, at : at + 2].copy().view(np.float16).astype(np.float32)


def _grid(blocks: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset of each group of 32 (weight = scale·code + offset), for the affine types."""
    if kind in ("Q4_K", "Q5_K"):
        sc, m = quants.Q4_K.get_scale_min(blocks[:, 4:16])
        return _f16(blocks, 0) * sc, -_f16(blocks, 2) * m
    centre = {"Q4_0": 8, "Q5_0": 16, "Q8_0": 128}
    if kind in centre:
        d = _f16(blocks, 0)
        return d, -centre[kind] * d
    return _f16(blocks, 0), _f16(blocks, 2)  # Q4_1, Q5_1: scale and minimum


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (rows × columns) into MLX's layout: each row a little-endian bit stream of uint32.
    Eight codes make `bits` whole bytes, so the stream is built eight codes at a time."""
    if 8 % bits == 0:  # 2, 4, 8 bits: whole codes per byte, in uint8 (three times faster)
        per = codes.reshape(codes.shape[0], -1, 8 // bits).astype(np.uint8)
        out = per[..., 0].copy()
        for k in range(1, 8 // bits):
            out |= per[..., k] << np.uint8(k * bits)
        return out.reshape(codes.shape[0], -1).view(np.uint32)
    eights = codes.reshape(codes.shape[0], -1, 8).astype(np.uint64)
    # Annotated: numpy types zeros() of a sliced shape as Any, and the shifts below with it.
    stream: npt.NDArray[np.uint64] = np.zeros(eights.shape[:2], np.uint64)
    for k in range(8):
        stream |= eights[..., k] << np.uint64(k * bits)
    out = (stream[..., None] >> (np.arange(bits, dtype=np.uint64) * np.uint64(8))).astype(np.uint8)
    return out.reshape(codes.shape[0], -1).view(np.uint32)


def _convert_rows(rows: np.ndarray, kind: str) -> tuple[mx.array, mx.array, mx.array]:
    bits = MLX_BITS[kind]
    values = dequantize(rows, kind)
    _, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    if kind in REQUANTIZED:
        packed, scales, biases = mx.quantize(mx.array(values), GROUP_SIZE, bits)
        return packed, scales.astype(mx.float16), biases.astype(mx.float16)
    n = values.shape[0]
    scale, offset = (g.reshape(n, -1, 1) for g in _grid(rows.reshape(-1, size), kind))
    groups = values.reshape(n, -1, GROUP_SIZE)
    # A group whose scale is 0 holds its offset only: any code will do.
    inverse = np.divide(1, scale, out=np.zeros_like(scale), where=scale != 0)
    codes = np.clip(np.rint((groups - offset) * inverse), 0, 2**bits - 1).astype(np.uint8).reshape(n, -1)
    return mx.array(pack(codes, bits)), mx.array(scale[..., 0], mx.float16), mx.array(offset[..., 0], mx.float16)


def convert_tensor(data: np.ndarray, kind: str) -> dict[str, mx.array]:
    """One GGUF tensor → {"weight": …} or MLX's {"weight", "scales", "biases"}."""
    if kind in _FLOAT:
        return {"weight": mx.array(dequantize(data, kind)).astype(_FLOAT[kind])}
    rows = data.reshape(-1, data.shape[-1])
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    step = max(1, _CHUNK_WEIGHTS // (rows.shape[1] // size * block))
    parts = []
    for start in range(0, rows.shape[0], step):
        part = _convert_rows(rows[start : start + step], kind)
        mx.eval(*part)
        parts.append(part)
    packed, scales, biases = (mx.concatenate(list(p)) if len(p) > 1 else p[0] for p in zip(*parts, strict=True))
    return {"weight": packed, "scales": scales, "biases": biases}


def _metadata_value(field: Any) -> Any:
    value = field.contents()
    return value.tolist() if isinstance(value, np.ndarray) else value


# Bytes per element of the safetensors dtypes `converted_layout` names.
ITEM_BYTES = {"U32": 4, "F16": 2, "BF16": 2, "F32": 4}


def converted_layout(reader: GGUFReader) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each array `read_converted` gives (safetensors dtype, shape), from the header alone:
    what a converted copy on disk is checked against."""
    layout: dict[str, tuple[str, tuple[int, ...]]] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        if kind in _FLOAT:
            layout[tensor.name] = (kind, shape)
            continue
        rows, cols = math.prod(shape[:-1]), shape[-1]
        base = tensor.name.removesuffix(".weight")
        layout[tensor.name] = ("U32", (rows, cols * MLX_BITS[kind] // 32))
        layout[f"{base}.scales"] = layout[f"{base}.biases"] = ("F16", (rows, cols // GROUP_SIZE))
    return layout


def open_gguf(path: Path) -> GGUFReader:
    try:
        return GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc


def gguf_metadata(reader: GGUFReader) -> dict[str, Any]:
    return {k: _metadata_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def read_converted(path: Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """Weights and metadata of a file holding CONVERTED types, as `mx.load` gives them for others."""
    from huggingface_hub.utils.tqdm import tqdm  # the bar downloads show (HF_HUB_DISABLE_PROGRESS_BARS hides both)

    reader = open_gguf(path)
    weights: dict[str, mx.array] = {}
    for tensor in tqdm(reader.tensors, desc=f"converting {path.name}", unit="tensor", leave=False):
        base = tensor.name.removesuffix(".weight")
        for suffix, array in convert_tensor(tensor.data, tensor.tensor_type.name).items():
            weights[tensor.name if suffix == "weight" else f"{base}.{suffix}"] = array
    return weights, gguf_metadata(reader)
