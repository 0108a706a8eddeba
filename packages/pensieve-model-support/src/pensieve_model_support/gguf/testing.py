"""Tiny GGUF files for tests, written with the gguf package: a complete llama with the bundled
tokenizer, its block's matrices stored in the tensor type under test. Types the gguf package
cannot quantize (K-quants, IQ) get random blocks with sane float16 scales (`random_blocks`):
valid to decode, meaningless to run."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, quants

# Byte offsets of each block's float16 scale fields (d, dmin or m), as gguf.quants splits them.
_F16_FIELDS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q8_0": (0,),
    "IQ4_NL": (0,),
    "IQ4_XS": (0,),
}
_BLOCK_MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def build_tiny_gguf(
    path: Path, tensor_type: str | Sequence[str] = "Q8_0", *, layers: int = 1, hidden_size: int = 256, seed: int = 0
) -> Path:
    """4 heads; `hidden_size` a multiple of 256 so that K-quant rows fit. Several tensor types
    are given to the block matrices in turn (as a Q4_K_M file mixes Q4_K and Q6_K)."""
    from ..testing import _bundled_tokenizer_metadata

    meta = _bundled_tokenizer_metadata()
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(2048)
    w.add_embedding_length(hidden_size)
    w.add_feed_forward_length(hidden_size)
    w.add_block_count(layers)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    w.add_chat_template(meta["tokenizer.chat_template"])

    rng = np.random.default_rng(seed)

    def add(name: str, shape: tuple[int, ...], kind: str) -> None:
        data = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if kind == "F32":
            w.add_tensor(name, data)
        elif kind == "F16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            qtype = GGMLQuantizationType[kind]
            w.add_tensor(name, _quantized(rng, data, qtype), raw_dtype=qtype)

    add("token_embd.weight", (len(meta["tokenizer.ggml.tokens"]), hidden_size), "Q8_0")
    add("output_norm.weight", (hidden_size,), "F32")
    kinds = itertools.cycle([tensor_type] if isinstance(tensor_type, str) else tensor_type)
    for layer in range(layers):
        add(f"blk.{layer}.attn_norm.weight", (hidden_size,), "F32")
        add(f"blk.{layer}.ffn_norm.weight", (hidden_size,), "F32")
        for part in _BLOCK_MATRICES:
            add(f"blk.{layer}.{part}.weight", (hidden_size, hidden_size), next(kinds))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def random_blocks(rng: np.random.Generator, kind: str, rows: int, cols: int, std: float = 0.05) -> np.ndarray:
    """Raw `kind` tensor data (rows × bytes): random codes and sub-block scales, float16 scales
    chosen so the weights' standard deviation is about `std` (random bytes there give NaN).
    Types we do not read get plain random bytes: only their header is looked at."""
    qtype = GGMLQuantizationType[kind]
    block, size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    if kind not in _F16_FIELDS:
        return blocks.reshape(rows, cols // block * size)
    spread = rng.uniform(0.5, 1.5, (len(blocks), len(_F16_FIELDS[kind])))

    def set_scales(factor: float) -> None:
        for i, at in enumerate(_F16_FIELDS[kind]):
            blocks[:, at : at + 2] = (spread[:, i] * factor).astype(np.float16).view(np.uint8).reshape(-1, 2)

    # The weights are linear in the float16 fields: measure at 1e-3, then scale to `std`.
    set_scales(1e-3)
    set_scales(1e-3 * std / float(quants.dequantize(blocks[:64], qtype).std()))
    return blocks.reshape(rows, cols // block * size)


def _quantized(rng: np.random.Generator, data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    try:
        return quants.quantize(data, qtype)
    except NotImplementedError:
        return random_blocks(rng, qtype.name, data.shape[0], data.shape[1])
