"""GGUF `gemma2` (Gemma 2) → mlx-lm `gemma2`.

Gemma's RMSNorm scales by 1 + weight; llama.cpp's converter adds that 1 to every `*norm.weight`
and mlx-lm adds it at run time, so `transform` takes it off again (exact for weights in
[-0.5, 1], where the float subtraction is). Embeddings are always tied."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..reader import GGUFContents
from ._base import BLOCK_NAMES, base_config, rename

_BLOCK_NAMES = {
    **BLOCK_NAMES,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def query_scale_size(config: dict[str, Any], large_blocks: int) -> float:
    """llama.cpp's rule, after gemma_pytorch: the 27B models (known by their block count) scale
    queries by hidden size over heads, the others by the head size."""
    if config["num_hidden_layers"] == large_blocks:
        return float(config["hidden_size"] // config["num_attention_heads"])
    return float(config["head_dim"])


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    config = base_config(gguf, "gemma2")
    config.update(
        attn_logit_softcapping=float(gguf.arch_field("attn_logit_softcapping", 50.0)),
        final_logit_softcapping=float(gguf.arch_field("final_logit_softcapping", 30.0)),
        query_pre_attn_scalar=query_scale_size(config, large_blocks=46),
    )
    return config


def transform(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    for name, value in weights.items():
        if name.endswith("norm.weight"):
            weights[name] = value - 1
    return weights


def tensor_name(name: str) -> str | None:
    return rename(name, _BLOCK_NAMES)
