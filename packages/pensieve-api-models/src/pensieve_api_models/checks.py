"""Rules across fields of a request body, each a 400 worded as the API words it, with the path."""

from __future__ import annotations

import msgspec

from pensieve_claude_types import (
    Effort,
    MessageParam,
    ThinkingAdaptive,
    ThinkingConfig,
    ThinkingEnabled,
    Tool,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceTool,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from pensieve_core.errors import InvalidRequestError

from .limits import MAX_TOOL_SCHEMA_BYTES

_encoder = msgspec.json.Encoder()


def check_messages(messages: list[MessageParam]) -> None:
    """At least one message, none empty but a final prefill, and tool results that answer calls."""
    if not messages:
        raise InvalidRequestError("messages: at least one message is required - at `$.messages`")
    for i, message in enumerate(messages):
        last_assistant = i == len(messages) - 1 and message.role == "assistant"
        if not message.content and not last_assistant and message.output_config is None:
            # The API's rule: only a final assistant turn (a prefill), or a message that carries
            # its own output_config, may be empty.
            raise InvalidRequestError(
                f"messages.{i}: all messages must have non-empty content except for the optional "
                f"final assistant message - at `$.messages[{i}].content`"
            )
    check_tool_results(messages)


def check_budget(thinking: ThinkingConfig | None, *, max_tokens: int) -> None:
    """A thinking budget (at least 1, the field's own rule) that leaves max_tokens room to answer."""
    if not isinstance(thinking, ThinkingEnabled):
        return
    budget = thinking.budget_tokens
    if budget >= max_tokens:
        raise InvalidRequestError(
            f"thinking.budget_tokens: max_tokens must be greater than thinking.budget_tokens "
            f"({max_tokens} <= {budget}) - at `$.thinking.budget_tokens`"
        )


def check_forced_tool(thinking: ThinkingConfig | None, tool_choice: ToolChoice | None, effort: Effort | None) -> None:
    """Thinking and a forced tool call do not go together. Low effort turns adaptive thinking
    off (docs/api.md, "Effort and thinking display"), so a call may then be forced."""
    thinks = isinstance(thinking, ThinkingEnabled) or (isinstance(thinking, ThinkingAdaptive) and effort != "low")
    if thinks and isinstance(tool_choice, (ToolChoiceAny, ToolChoiceTool)):
        raise InvalidRequestError(
            "tool_choice: Thinking may not be enabled when tool_choice forces tool use. - at `$.tool_choice`"
        )


def check_tools(tools: list[Tool] | None, tool_choice: ToolChoice | None) -> None:
    """Names unique, schemas bounded, and a tool_choice that forces a call has tools to call."""
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools or ()):
        if tool.name in seen:
            raise InvalidRequestError(
                f"tools: Tool names must be unique; tools.{seen[tool.name]} and tools.{i} are both "
                f"named {tool.name!r} - at `$.tools[{i}].name`"
            )
        seen[tool.name] = i
        if tool.input_schema is not None and len(_encoder.encode(tool.input_schema)) > MAX_TOOL_SCHEMA_BYTES:
            raise InvalidRequestError(
                f"tools.{i}.input_schema: a tool's schema may be at most {MAX_TOOL_SCHEMA_BYTES} bytes "
                f"of JSON - at `$.tools[{i}].input_schema`"
            )
    if isinstance(tool_choice, (ToolChoiceAny, ToolChoiceTool)) and not tools:
        raise InvalidRequestError(
            f"tool_choice: `{'any' if isinstance(tool_choice, ToolChoiceAny) else 'tool'}` may only be "
            "specified while providing tools - at `$.tool_choice`"
        )
    if isinstance(tool_choice, ToolChoiceTool) and tool_choice.name not in seen:
        raise InvalidRequestError(
            f"tool_choice.name: tool {tool_choice.name!r} is not among the provided tools - at `$.tool_choice.name`"
        )


def check_tool_results(messages: list[MessageParam]) -> None:
    """Each tool_result answers a tool_use of the assistant turn just before its user turn.
    System messages in between are skipped and consecutive same-role turns count as one, as
    the API merges them."""
    offered: set[str] = set()  # tool_use ids of the latest assistant turn
    previous = None
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        blocks = message.content if isinstance(message.content, list) else []
        if message.role == "assistant":
            if previous != "assistant":
                offered = set()
            offered.update(b.id for b in blocks if isinstance(b, ToolUseBlockParam))
        else:
            for k, block in enumerate(blocks):
                if isinstance(block, ToolResultBlockParam) and block.tool_use_id not in offered:
                    raise InvalidRequestError(
                        f"messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` "
                        f"block in the previous message. - at `$.messages[{i}].content[{k}].tool_use_id`"
                    )
        previous = message.role
