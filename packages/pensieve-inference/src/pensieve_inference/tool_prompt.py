"""Tools for templates that do not know tools: described in the system text, with calls
written as JSON inside <tool_call> tags (the Hermes/Qwen convention, parsed by mlx-lm's
json_tools parser)."""

from __future__ import annotations

import json
from typing import Any

from pensieve_claude_types import Tool

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"


def function_spec(tool: Tool) -> dict[str, Any]:
    """The OpenAI-style function entry tool-aware chat templates expect."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        },
    }


def tools_system_text(tools: list[Tool]) -> str:
    listing = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description or "", "input_schema": t.input_schema or {}},
            ensure_ascii=False,
        )
        for t in tools
    )
    return (
        "# Tools\n\n"
        "You may call one or more of the tools below. To call a tool, reply with a JSON object "
        f"naming it and giving its arguments, inside {TOOL_CALL_START}{TOOL_CALL_END} tags:\n"
        f'{TOOL_CALL_START}\n{{"name": "tool name", "arguments": {{"arg": "value"}}}}\n{TOOL_CALL_END}\n'
        "Tool results come back inside <tool_result></tool_result> tags.\n\n"
        f"Available tools:\n{listing}"
    )
