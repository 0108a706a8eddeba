"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_core

EXPECTED = {
    "CLAUDE_TIERS",
    "DEFAULT_API_KEY",
    "DEFAULT_MODEL",
    "KV_BITS",
    "Engine",
    "Failed",
    "Finished",
    "GenerationEvent",
    "GenerationRequest",
    "ModelCard",
    "Phases",
    "PrefillProgress",
    "SETTING_NAMES",
    "Settings",
    "Started",
    "TextDelta",
    "ThinkingDelta",
    "ThinkingEnd",
    "ToolInputDelta",
    "ToolUseEnd",
    "ToolUseStart",
    "check_setting_name",
    "default_home",
    "errors",
    "load_settings",
    "parse_setting",
    "read_config_file",
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_core).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_core.__all__)
    }
    assert set(pensieve_core.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
