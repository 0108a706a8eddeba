"""Request bodies shaped like Claude Code 2.1.332's (recorded traffic; the text is made up here):
three system blocks with the billing line first, ~12 tools (one deferred), a user turn opening
with a <system-reminder>, a system message last, and optional tool turns with tool_reference
results."""

from __future__ import annotations

import random
from typing import Any

TOOL_NAMES = [
    "Agent",
    "Bash",
    "Edit",
    "ListAgents",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "Skill",
    "ToolSearch",
    "Workflow",
    "DeferredToolPlaceholder",
    "Write",
]

_WORDS = [
    "file",
    "path",
    "command",
    "output",
    "agent",
    "task",
    "result",
    "change",
    "review",
    "test",
    "build",
    "error",
    "line",
    "search",
    "pattern",
    "directory",
    "project",
    "shell",
    "session",
    "user",
    "context",
    "tool",
    "call",
]


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def claude_code_tools(chars: int = 31_000, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    per = chars // len(TOOL_NAMES)
    tools = []
    for name in TOOL_NAMES:
        tool: dict[str, Any] = {
            "name": name,
            "description": " ".join(_prose(rng, 12) for _ in range(max(1, per // 90))),
            "input_schema": {
                "type": "object",
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "additionalProperties": False,
                "properties": {
                    "command": {"type": "string", "description": _prose(rng, 10)},
                    "timeout": {"type": "number", "description": _prose(rng, 6)},
                },
                "required": ["command"],
            },
        }
        if name == "DeferredToolPlaceholder":
            tool["defer_loading"] = True
        tools.append(tool)
    return tools


def claude_code_body(
    *,
    billing_suffix: str = "0b8",
    prompt: str = "Say hi",
    tool_turns: bool = False,
    seed: int = 0,
    tool_chars: int = 31_000,
) -> dict[str, Any]:
    rng = random.Random(seed)
    # Drawn first, so the stable prefix is the same whatever the conversation holds.
    instructions = "\n" + "\n".join(_prose(rng, 30) for _ in range(20)) + "\n"
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "<system-reminder>\nAs you answer the user's questions, you can use "
                    "the following context:\n# gitStatus\nCurrent branch: main\n"
                    + _prose(rng, 40)
                    + "\n</system-reminder>\n",
                },
                {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]
    if tool_turns:
        messages += [
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should find the tool.", "signature": "c2ln"},
                    {"type": "tool_use", "id": "toolu_01", "name": "ToolSearch", "input": {"command": "select:Read"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": [{"type": "tool_reference", "tool_name": "Read"}],
                    }
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_02", "name": "Read", "input": {"command": "README.md"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": _prose(rng, 60),
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ]
    messages.append(
        {
            "role": "system",
            "content": [
                {
                    "type": "text",
                    "text": (
                        "# Environment\nYou have been invoked in the following environment: \n"
                        " - Primary working directory: /home/user/project\n - Is a git repository: true\n"
                        " - Platform: linux\n - Shell: bash\n"
                    ),
                }
            ],
        }
    )
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": True,
        "system": [
            {
                "type": "text",
                "text": f"x-anthropic-billing-header: cc_version=2.1.332.{billing_suffix}; cc_entrypoint=sdk-cli;",
            },
            {
                "type": "text",
                "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": instructions, "cache_control": {"type": "ephemeral"}},
        ],
        "messages": messages,
        "tools": claude_code_tools(tool_chars, seed=seed),
        "metadata": {"user_id": '{"device_id":"abc","account_uuid":"","session_id":"s"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }
