"""Split streamed model text into plain text and complete tool calls.

Text before a call streams at once; text that might be the start of the call marker is held
back; a call is parsed (with mlx-lm's parser for the model's dialect) once its end marker
arrives. A call that does not parse is given back as text, never dropped.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import structlog

from pensieve_core import TextDelta, ToolCall

log = structlog.get_logger("pensieve.tools")

Parser = Callable[[str, Any], Any]


def tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def _json_parser(text: str, tools: Any = None) -> Any:
    return json.loads(text.strip())


def _held_prefix(buffer: str, marker: str) -> int:
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if buffer.endswith(marker[:size]):
            return size
    return 0


class ToolCallSplitter:
    def __init__(
        self,
        *,
        start: str,
        end: str,
        tool_names: set[str],
        parser: Parser | None = None,
        tools_spec: Any = None,
    ) -> None:
        self.start, self.end = start, end
        self.tool_names = tool_names
        self.parser = parser or _json_parser
        self.tools_spec = tools_spec
        self._buffer = ""
        self._in_call = False
        self.calls = 0

    def feed(self, text: str) -> list[TextDelta | ToolCall]:
        self._buffer += text
        out: list[TextDelta | ToolCall] = []
        while True:
            if not self._in_call:
                index = self._buffer.find(self.start)
                if index < 0:
                    keep = _held_prefix(self._buffer, self.start)
                    emit = self._buffer[: len(self._buffer) - keep]
                    self._buffer = self._buffer[len(emit) :]
                    if emit:
                        out.append(TextDelta(text=emit))
                    return out
                if index:
                    out.append(TextDelta(text=self._buffer[:index]))
                self._buffer = self._buffer[index + len(self.start) :]
                self._in_call = True
            if not self.end:
                return out  # the call runs to the end of the output (Mistral style)
            index = self._buffer.find(self.end)
            if index < 0:
                return out
            body, self._buffer = self._buffer[:index], self._buffer[index + len(self.end) :]
            self._in_call = False
            out.extend(self._parse(body))

    def finish(self) -> list[TextDelta | ToolCall]:
        buffer, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            # An unterminated call: parse what there is, or give it back as text.
            return self._parse(buffer, closed=False)
        return [TextDelta(text=buffer)] if buffer else []

    def _parse(self, body: str, closed: bool = True) -> list[TextDelta | ToolCall]:
        raw = self.start + body + (self.end if closed else "")
        try:
            parsed = self.parser(body, self.tools_spec)
            calls = parsed if isinstance(parsed, list) else [parsed]
            events = [self._tool_call(c) for c in calls]
        except (ValueError, TypeError, KeyError, AttributeError, SyntaxError) as exc:
            log.warning("tool_call_unparsed", error=str(exc), chars=len(body))
            return [TextDelta(text=raw)]
        self.calls += len(events)
        return events

    def _tool_call(self, call: Any) -> ToolCall:
        if not isinstance(call, dict):
            raise TypeError(f"a tool call must be an object, got {type(call).__name__}")
        name = call["name"]
        arguments = call.get("arguments", call.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise TypeError("tool call arguments must be an object")
        if name not in self.tool_names:
            raise KeyError(f"unknown tool {name!r}")
        return ToolCall(id=tool_use_id(), name=name, input=arguments)
