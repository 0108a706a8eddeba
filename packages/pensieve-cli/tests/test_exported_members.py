"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_cli

EXPECTED = {"cli"}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_cli).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_cli.__all__)
    }
    assert set(pensieve_cli.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
