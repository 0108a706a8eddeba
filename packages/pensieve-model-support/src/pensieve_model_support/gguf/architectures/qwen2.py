"""GGUF `qwen2` (Qwen2, Qwen2.5, Qwen2.5-Coder, QwQ) → mlx-lm `qwen2`: the llama layout with q/k/v
biases, stored as the model has them (the converter permutes q/k for llama-family models only)."""

from __future__ import annotations

from typing import Any

from ..reader import GGUFContents
from ._base import BLOCK_NAMES, base_config, rename, rope_scaling


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    return {**base_config(gguf, "qwen2"), "rope_scaling": rope_scaling(gguf)}


def tensor_name(name: str) -> str | None:
    return rename(name, BLOCK_NAMES)
