"""GGUF `qwen3moe` (Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Coder-30B-A3B) → mlx-lm `qwen3_moe`.

The converter stacks each layer's experts into one [experts, out, in] tensor per projection
(`ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps`), which is mlx-lm's `switch_mlp` layout already.
Two things are undone here: our own K-quant conversion gives those tensors as 2-d rows, and MLX's
CPU gather_mm multiplies float32 only, so float experts are widened there (twice the memory)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..reader import GGUFContents
from ._base import base_config, rename
from .qwen3 import _BLOCK_NAMES as QWEN3_NAMES

_BLOCK_NAMES = {
    **QWEN3_NAMES,
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.switch_mlp.gate_proj",
    "ffn_up_exps": "mlp.switch_mlp.up_proj",
    "ffn_down_exps": "mlp.switch_mlp.down_proj",
}


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    config = base_config(gguf, "qwen3_moe")
    expert_size = int(gguf.arch_field("expert_feed_forward_length"))
    config.update(
        num_experts=int(gguf.arch_field("expert_count")),
        num_experts_per_tok=int(gguf.arch_field("expert_used_count")),
        moe_intermediate_size=expert_size,
        intermediate_size=config["intermediate_size"] or expert_size,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        # llama.cpp renormalizes the chosen experts' weights for qwen3moe unless the file says otherwise.
        norm_topk_prob=bool(gguf.arch_field("expert_weights_norm", True)),
    )
    return config


def transform(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    widen = mx.default_device() == mx.cpu
    for name, value in weights.items():
        if "_exps." not in name:
            continue
        if value.ndim == 2:
            value = value.reshape(config["num_experts"], -1, value.shape[-1])
        if widen and name.endswith(".weight") and value.dtype in (mx.float16, mx.bfloat16):
            value = value.astype(mx.float32)
        weights[name] = value
    return weights


def tensor_name(name: str) -> str | None:
    return rename(name, _BLOCK_NAMES)
