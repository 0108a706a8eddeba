"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_claude_types

EXPECTED = {
    "Base64Source",
    "CacheControl",
    "ContentBlock",
    "ContentBlockParam",
    "ContentSource",
    "DocumentBlockParam",
    "Effort",
    "FileSource",
    "ImageBlockParam",
    "JsonOutputFormat",
    "MediaSource",
    "Message",
    "MessageOutputConfig",
    "MessageParam",
    "OutputConfig",
    "RedactedThinkingBlock",
    "RedactedThinkingBlockParam",
    "Role",
    "SearchResultBlockParam",
    "ServerToolUseBlockParam",
    "StopReason",
    "TextBlock",
    "TextBlockParam",
    "TextSource",
    "ThinkingAdaptive",
    "ThinkingBlock",
    "ThinkingBlockParam",
    "ThinkingConfig",
    "ThinkingDisabled",
    "ThinkingDisplay",
    "ThinkingEnabled",
    "Tool",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceNone",
    "ToolChoiceTool",
    "ToolReferenceBlockParam",
    "ToolResultBlockParam",
    "ToolResultContent",
    "ToolUseBlock",
    "ToolUseBlockParam",
    "UrlSource",
    "Usage",
    "WebSearchToolResultBlockParam",
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_claude_types).items()
        if not name.startswith("_")
        and not (isinstance(value, ModuleType) and name not in pensieve_claude_types.__all__)
    }
    assert set(pensieve_claude_types.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
