"""GGUF `llama` → mlx-lm `llama`."""

from __future__ import annotations

import re
from typing import Any

from ..reader import GGUFContents

_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|scales|biases|bias)$")
_TOP = re.compile(r"^(token_embd|output_norm|output)\.(weight|scales|biases|bias)$")

_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    heads = int(gguf.arch_field("attention.head_count"))
    hidden = int(gguf.arch_field("embedding_length"))
    vocab = gguf.arch_field("vocab_size") or len(gguf.metadata["tokenizer.ggml.tokens"])
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(gguf.arch_field("block_count")),
        "intermediate_size": int(gguf.arch_field("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(gguf.arch_field("attention.head_count_kv", heads)),
        "rms_norm_eps": float(gguf.arch_field("attention.layer_norm_rms_epsilon", 1e-5)),
        "vocab_size": int(vocab),
        "head_dim": int(gguf.arch_field("attention.key_length", hidden // heads)),
        "rope_theta": float(gguf.arch_field("rope.freq_base", 10000.0)),
        # llama.cpp's converter permutes q/k for its rotary layout, which is MLX's "traditional".
        "rope_traditional": True,
        "max_position_embeddings": int(gguf.arch_field("context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in gguf.weights,
    }


def tensor_name(name: str) -> str | None:
    if m := _BLOCK.match(name):
        layer, part, kind = m.groups()
        target = _BLOCK_NAMES.get(part)
        return f"model.layers.{layer}.{target}.{kind}" if target else None
    if m := _TOP.match(name):
        part, kind = m.groups()
        return f"{_TOP_NAMES[part]}.{kind}"
    return None
