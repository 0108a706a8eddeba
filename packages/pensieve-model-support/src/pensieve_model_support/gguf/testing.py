"""Tiny GGUF files for tests, written with the gguf package: a complete llama with the bundled
tokenizer, its block's matrices stored in the tensor type under test. Types the gguf package
cannot quantize (K-quants, IQ) get random blocks: valid to decode, meaningless to run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, quants

_BLOCK_MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def build_tiny_gguf(path: Path, tensor_type: str = "Q8_0", *, hidden_size: int = 256, seed: int = 0) -> Path:
    """One layer, 4 heads; `hidden_size` a multiple of 256 so that K-quant rows fit."""
    from ..testing import _bundled_tokenizer_metadata

    meta = _bundled_tokenizer_metadata()
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(2048)
    w.add_embedding_length(hidden_size)
    w.add_feed_forward_length(hidden_size)
    w.add_block_count(1)
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
    add("blk.0.attn_norm.weight", (hidden_size,), "F32")
    add("blk.0.ffn_norm.weight", (hidden_size,), "F32")
    for part in _BLOCK_MATRICES:
        add(f"blk.0.{part}.weight", (hidden_size, hidden_size), tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _quantized(rng: np.random.Generator, data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    try:
        return quants.quantize(data, qtype)
    except NotImplementedError:
        block, size = GGML_QUANT_SIZES[qtype]
        return rng.integers(0, 256, (data.shape[0], data.shape[1] // block * size), dtype=np.uint8)
