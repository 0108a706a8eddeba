"""Turn a Messages request into chat-template messages.

Two shapes, chosen by the template: templates that know tools get OpenAI-style `tool_calls`
and `tool` turns; others get calls and results written as tagged text (the generic
convention in `dialects.generic`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pensieve_claude_types import (
    DocumentBlockParam,
    ImageBlockParam,
    MessageParam,
    TextBlockParam,
    Tool,
    ToolReferenceBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError

from .dialects import generic

# Claude Code's first system block changes per conversation and means nothing to a local model.
BILLING_PREFIX = "x-anthropic-billing-header:"

ChatMessage = dict[str, Any]


def system_text(system: str | list[TextBlockParam] | None) -> str:
    if system is None:
        return ""
    blocks = [system] if isinstance(system, str) else [b.text for b in system]
    return "\n\n".join(b for b in blocks if b and not b.lstrip().startswith(BILLING_PREFIX))


def _unsupported(kind: str, model_name: str) -> InvalidRequestError:
    return InvalidRequestError(f"model {model_name!r} is text-only and cannot read {kind} blocks")


def loaded_tool_text(tool: Tool) -> str:
    """A deferred tool's definition where a tool_reference loads it, as the API expands it there:
    the prompt before it (tool list included) stays as it was, and so does the cache."""
    schema = json.dumps(tool.input_schema or {"type": "object", "properties": {}}, ensure_ascii=False)
    lines = [f"Tool {tool.name} is now available.", tool.description, f"Input schema: {schema}"]
    return "\n".join(line for line in lines if line)


def tool_result_text(block: ToolResultBlockParam, model_name: str, deferred: Mapping[str, Tool] | None = None) -> str:
    if isinstance(block.content, str):
        return block.content
    parts = []
    for item in block.content:
        if isinstance(item, TextBlockParam):
            parts.append(item.text)
        elif isinstance(item, ToolReferenceBlockParam):
            tool = (deferred or {}).get(item.tool_name)
            parts.append(loaded_tool_text(tool) if tool is not None else f"Tool {item.tool_name} is now available.")
        elif isinstance(item, ImageBlockParam):
            raise _unsupported("image", model_name)
        elif isinstance(item, DocumentBlockParam):
            raise _unsupported("document", model_name)
        else:
            parts.append("\n".join(t.text for t in getattr(item, "content", [])))
    return "\n".join(parts)


class ConversationBuilder:
    def __init__(self, model_name: str, native_tools: bool, deferred: Mapping[str, Tool] | None = None) -> None:
        self.model_name = model_name
        self.native_tools = native_tools
        # Tools with defer_loading, by name: shown where a tool_reference loads them.
        self.deferred = deferred or {}
        self.turns: list[ChatMessage] = []

    def _append(self, role: str, text: str, **extra: Any) -> None:
        last = self.turns[-1] if self.turns else None
        if last is not None and last["role"] == role and role != "tool" and not extra and "tool_calls" not in last:
            last["content"] = f"{last['content']}\n\n{text}" if last["content"] and text else last["content"] + text
        else:
            self.turns.append({"role": role, "content": text, **extra})

    def add_system_note(self, text: str) -> None:
        """A system message after the conversation began: kept in place, as user-turn context,
        so the rendered prefix before it stays the same from turn to turn."""
        if text:
            self._append("user", f"<system-reminder>\n{text}\n</system-reminder>")

    def add(self, message: MessageParam) -> None:
        if isinstance(message.content, str):
            self._append(message.role, message.content)
            return
        texts: list[str] = []
        calls: list[ChatMessage] = []
        for block in message.content:
            if isinstance(block, TextBlockParam):
                texts.append(block.text)
            elif isinstance(block, ImageBlockParam):
                raise _unsupported("image", self.model_name)
            elif isinstance(block, DocumentBlockParam):
                raise _unsupported("document", self.model_name)
            elif isinstance(block, ToolUseBlockParam):
                if self.native_tools:
                    calls.append(
                        {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": block.input}}
                    )
                else:
                    texts.append(generic.call_text(block.name, block.input))
            elif isinstance(block, ToolResultBlockParam):
                result = tool_result_text(block, self.model_name, self.deferred)
                if block.is_error:
                    result = f"Error: {result}"
                if self.native_tools:
                    self._flush_text(message.role, texts)
                    self.turns.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
                else:
                    texts.append(f"<tool_result>\n{result}\n</tool_result>")
            # thinking, redacted_thinking and server-tool blocks are not replayed to the model
        if calls:
            self.turns.append({"role": "assistant", "content": "\n\n".join(texts), "tool_calls": calls})
        else:
            self._flush_text(message.role, texts)

    def _flush_text(self, role: str, texts: list[str]) -> None:
        if texts:
            self._append(role, "\n\n".join(t for t in texts if t))
            texts.clear()


@dataclass
class Conversation:
    system: str
    turns: list[ChatMessage]
    # A final assistant turn, as text for the answer to continue.
    prefill: str = ""
    # The system text and turns as they stood at the end of the message holding the request's
    # last cache_control breakpoint (None: it has none); the API's cache writes end there.
    marked: tuple[str, list[ChatMessage]] | None = None


def _has_breakpoint(message: MessageParam) -> bool:
    return not isinstance(message.content, str) and any(
        getattr(b, "cache_control", None) is not None for b in message.content
    )


def _system_breakpoint(request: GenerationRequest) -> bool:
    """Tools come before the system prompt in the API's order; both render in the system turn."""
    blocks = request.system if isinstance(request.system, list) else []
    parts: list[TextBlockParam | Tool] = [*blocks, *(request.tools or [])]
    return any(b.cache_control is not None for b in parts)


def read_conversation(request: GenerationRequest, model_name: str, *, native_tools: bool) -> Conversation:
    system_parts = [system_text(request.system)]
    deferred = {t.name: t for t in request.tools or [] if t.defer_loading}
    builder = ConversationBuilder(model_name, native_tools, deferred)

    def system() -> str:
        return "\n\n".join(p for p in system_parts if p)

    def snapshot() -> tuple[str, list[ChatMessage]]:
        return system(), [dict(t) for t in builder.turns]

    marked = snapshot() if _system_breakpoint(request) else None
    for message in request.messages:
        if message.role == "system":
            text = system_text(
                message.content
                if isinstance(message.content, str)
                else [b for b in message.content if isinstance(b, TextBlockParam)]
            )
            if builder.turns:
                builder.add_system_note(text)
            else:
                system_parts.append(text)
        else:
            builder.add(message)
        if _has_breakpoint(message):
            marked = snapshot()
    if request.cache_control is not None:  # automatic caching: the last block is the breakpoint
        marked = snapshot()
    turns = builder.turns
    prefill = ""
    if turns and turns[-1]["role"] == "assistant" and "tool_calls" not in turns[-1]:
        prefill = turns.pop()["content"]
    return Conversation(system(), turns, prefill, marked)


def build_conversation(
    request: GenerationRequest, model_name: str, *, native_tools: bool
) -> tuple[str, list[ChatMessage], str]:
    """(system text, turns, prefill): a final assistant turn is returned as text to continue."""
    c = read_conversation(request, model_name, native_tools=native_tools)
    return c.system, c.turns, c.prefill
