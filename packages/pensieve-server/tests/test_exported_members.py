"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_server

EXPECTED = {"ServedModels", "create_app", "open_engine", "open_models", "run_server", "serve_models"}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_server).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_server.__all__)
    }
    assert set(pensieve_server.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
