"""Device queries, memory limits and kernel choices for MLX."""

from .device import DeviceInfo, DeviceKind, MemorySnapshot, device_info, device_kind, memory_snapshot
from .kernels import avoid_per_shape_attention, keep_compiled_kernels
from .limits import AppliedLimits, apply_memory_limits, check_fits, memory_after_weights, prefix_cache_budget

__all__ = [
    "AppliedLimits",
    "DeviceInfo",
    "DeviceKind",
    "MemorySnapshot",
    "apply_memory_limits",
    "avoid_per_shape_attention",
    "check_fits",
    "device_info",
    "device_kind",
    "keep_compiled_kernels",
    "memory_after_weights",
    "memory_snapshot",
    "prefix_cache_budget",
]
