"""GGUF `phi3` (Phi-3, Phi-3.5, Phi-4-mini) → mlx-lm `phi3`.

The converter keeps Phi-3's fused projections (`attn_qkv`, and `ffn_up` holding gate then up),
which is mlx-lm's layout too. LongRoPE's factors arrive as two tensors (`rope_factors_long`,
`rope_factors_short`), which go into the config; a partial rotary size as `rope.dimension_count`."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..reader import GGUFContents
from ._base import base_config, rename

_BLOCK_NAMES = {
    "attn_qkv": "self_attn.qkv_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_up": "mlp.gate_up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_FACTORS = ("rope_factors_long.weight", "rope_factors_short.weight")


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    config = base_config(gguf, "phi3")
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    config["partial_rotary_factor"] = int(gguf.arch_field("rope.dimension_count", head_dim)) / head_dim
    long, short = (gguf.weights.get(name) for name in _FACTORS)
    if long is not None and short is not None:
        config["rope_scaling"] = {"type": "longrope", "long_factor": long.tolist(), "short_factor": short.tolist()}
        config["original_max_position_embeddings"] = int(gguf.arch_field("rope.scaling.original_context_length"))
    return config


def transform(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    for name in _FACTORS:
        weights.pop(name, None)  # now in the config
    return weights


def tensor_name(name: str) -> str | None:
    return rename(name, _BLOCK_NAMES)
