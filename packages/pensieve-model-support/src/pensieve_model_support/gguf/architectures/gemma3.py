"""GGUF `gemma3` (Gemma 3 text, and the text part of the multimodal 4B-27B) → mlx-lm `gemma3_text`.

Gemma 2's layout with per-head q/k norms, and the same norms +1 undone. llama.cpp fixes what the
file leaves out: five sliding-window layers to one global (`sliding_window_pattern` 6), local rope
base 10,000; the global layers' linear rope scaling is in the file (the 4B-27B have 8)."""

from __future__ import annotations

from typing import Any

from ..reader import GGUFContents
from ._base import base_config, rename, rope_scaling
from .gemma2 import _BLOCK_NAMES as GEMMA2_NAMES
from .gemma2 import query_scale_size, transform

__all__ = ["model_config", "tensor_name", "transform"]

_BLOCK_NAMES = {**GEMMA2_NAMES, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    config = base_config(gguf, "gemma3_text")
    config.update(
        rope_theta=float(gguf.arch_field("rope.freq_base", 1_000_000.0)),
        rope_local_base_freq=float(gguf.arch_field("rope.freq_base_swa", 10_000.0)),
        rope_scaling=rope_scaling(gguf),
        sliding_window=int(gguf.arch_field("attention.sliding_window", 512)),
        sliding_window_pattern=int(gguf.arch_field("attention.sliding_window_pattern", 6)),
        query_pre_attn_scalar=query_scale_size(config, large_blocks=62),
    )
    return config


def tensor_name(name: str) -> str | None:
    return rename(name, _BLOCK_NAMES)
