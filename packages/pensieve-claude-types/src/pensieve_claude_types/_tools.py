"""Tool definitions, tool choice and the thinking switch."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ._blocks import CacheControl


class Tool(msgspec.Struct, omit_defaults=True):
    """A client tool, or a built-in typed one (those carry `type` and may lack a schema)."""

    name: Annotated[str, msgspec.Meta(min_length=1)]  # the API's rule: a call must name its tool
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    cache_control: CacheControl | None = None
    strict: bool | None = None
    defer_loading: bool | None = None


class ToolChoiceAuto(msgspec.Struct, tag_field="type", tag="auto", omit_defaults=True):
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(msgspec.Struct, tag_field="type", tag="any", omit_defaults=True):
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(msgspec.Struct, tag_field="type", tag="tool", omit_defaults=True):
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(msgspec.Struct, tag_field="type", tag="none", omit_defaults=True):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


# "omitted": thinking blocks come back with empty text and a signature (the model still thinks);
# "updates" (a 2026 beta) hides the reasoning too, and a local model writes no progress updates.
ThinkingDisplay = Literal["summarized", "omitted", "updates"]


class ThinkingEnabled(msgspec.Struct, tag_field="type", tag="enabled", omit_defaults=True):
    # At least one token; budgets under the API's 1,024 are accepted (small local models).
    budget_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    display: ThinkingDisplay | None = None


class ThinkingDisabled(msgspec.Struct, tag_field="type", tag="disabled"):
    pass


class ThinkingAdaptive(msgspec.Struct, tag_field="type", tag="adaptive", omit_defaults=True):
    display: ThinkingDisplay | None = None


ThinkingConfig = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive
