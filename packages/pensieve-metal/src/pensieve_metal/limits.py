"""Applying MLX memory limits."""

from __future__ import annotations

import mlx.core as mx
import msgspec

from pensieve_core.errors import ModelLoadError

from .device import device_info

# Room left for the KV cache, activations and the rest of the process.
HEADROOM = 0.9


class AppliedLimits(msgspec.Struct, kw_only=True):
    memory_limit_bytes: int
    cache_limit_bytes: int
    wired_limit_bytes: int | None


def apply_memory_limits(
    *, memory_fraction: float = 0.9, cache_limit_bytes: int | None = None, wire_bytes: int | None = None
) -> AppliedLimits:
    """Cap MLX's allocations at a fraction of device memory; optionally wire model weights.

    Wiring only exists on Metal (macOS 15+); elsewhere the request is ignored.
    """
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    info = device_info()
    limit = int(info.memory_total_bytes * memory_fraction)
    mx.set_memory_limit(limit)
    cache = limit // 4 if cache_limit_bytes is None else cache_limit_bytes
    mx.set_cache_limit(cache)
    wired = None
    if wire_bytes and info.kind == "metal":
        wired = min(wire_bytes, info.recommended_working_set_bytes)
        mx.set_wired_limit(wired)
    return AppliedLimits(memory_limit_bytes=limit, cache_limit_bytes=cache, wired_limit_bytes=wired)


def memory_after_weights(weights_bytes: int) -> int:
    """Bytes the device has for everything but the weights: KV caches and activations."""
    return max(0, int(device_info().recommended_working_set_bytes * HEADROOM) - weights_bytes)


def prefix_cache_budget(weights_bytes: int, *, fraction: float = 0.25) -> int:
    """Bytes for cached prefixes: a share of what the device has left after the weights
    (the rest is for the sequences being decoded and the activations)."""
    return int(memory_after_weights(weights_bytes) * fraction)


def check_fits(name: str, needed_bytes: int, *, budget_bytes: int | None = None) -> None:
    """Refuse a model whose weights cannot fit: better a clear error than a swapping machine."""
    info = device_info()
    budget = budget_bytes if budget_bytes is not None else int(info.recommended_working_set_bytes * HEADROOM)
    if needed_bytes > budget:
        raise ModelLoadError(
            f"{name} needs about {needed_bytes / 1e9:.1f} GB for its weights; this {info.kind} "
            f"device has {budget / 1e9:.1f} GB for models"
        )
