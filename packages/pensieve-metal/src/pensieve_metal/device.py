"""Which device MLX runs on, and how much memory it has."""

from __future__ import annotations

import os
from typing import Literal

import mlx.core as mx
import msgspec

DeviceKind = Literal["metal", "cuda", "cpu"]


class DeviceInfo(msgspec.Struct, kw_only=True):
    kind: DeviceKind
    name: str
    memory_total_bytes: int
    # What MLX may wire for model weights (Metal's recommended working set; elsewhere total).
    recommended_working_set_bytes: int


class MemorySnapshot(msgspec.Struct, kw_only=True):
    active_bytes: int
    peak_bytes: int
    cache_bytes: int
    limit_bytes: int


def _system_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def device_kind() -> DeviceKind:
    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available():
        return "cuda"
    return "cpu"


def device_info() -> DeviceInfo:
    kind = device_kind()
    info = mx.device_info()
    total = int(info.get("memory_size", 0)) or _system_memory_bytes()
    working_set = int(info.get("max_recommended_working_set_size", 0)) or total
    return DeviceInfo(
        kind=kind,
        name=str(info.get("device_name") or info.get("architecture") or kind),
        memory_total_bytes=total,
        recommended_working_set_bytes=working_set,
    )


def memory_snapshot() -> MemorySnapshot:
    return MemorySnapshot(
        active_bytes=mx.get_active_memory(),
        peak_bytes=mx.get_peak_memory(),
        cache_bytes=mx.get_cache_memory(),
        limit_bytes=mx.get_memory_limit(),
    )
