"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_metal

EXPECTED = {
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
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_metal).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_metal.__all__)
    }
    assert set(pensieve_metal.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
