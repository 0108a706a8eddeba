"""GGUF `qwen3` (Qwen3 dense) → mlx-lm `qwen3`: qwen2's layout without the biases, with per-head
q/k norms (`attn_q_norm`, `attn_k_norm`) and a head size of its own (`attention.key_length`)."""

from __future__ import annotations

from typing import Any

from ..reader import GGUFContents
from ._base import BLOCK_NAMES, base_config, rename, rope_scaling

_BLOCK_NAMES = {**BLOCK_NAMES, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    return {**base_config(gguf, "qwen3"), "rope_scaling": rope_scaling(gguf)}


def tensor_name(name: str) -> str | None:
    return rename(name, _BLOCK_NAMES)
