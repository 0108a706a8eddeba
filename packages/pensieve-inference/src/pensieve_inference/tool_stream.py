"""Split streamed model text into text and tool calls, in the model's dialect.

Text before a call streams at once; text that might be the start of the call marker is held
back; inside a call the dialect's reader says when the name is known and how the input grows,
so a tool_use block opens and its input streams while the model writes it. A call that cannot
be read (or names no offered tool) before it began goes back as text, never dropped.
"""

from __future__ import annotations

import secrets

import structlog

from pensieve_core import GenerationEvent, TextDelta, ToolInputDelta, ToolUseEnd, ToolUseStart

from .dialects import Begin, Dialect, End, InputDelta, Loose, ToolSpecs
from .dialects.base import ReaderEvent
from .markers import held_prefix

log = structlog.get_logger("pensieve.tools")


# What reading model text as a call may raise (MalformedCall is a ValueError): caught here, once,
# so no reader's parse error can reach the generation loop.
_UNREADABLE = (ValueError, TypeError, SyntaxError)


def tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


class ToolCallStream:
    def __init__(self, dialect: Dialect, tools: ToolSpecs, *, single: bool = False) -> None:
        self.dialect = dialect
        self.tools = tools
        self.names = {t["function"]["name"] for t in tools}
        self.single = single
        self.calls = 0  # completed calls
        self._buffer = ""
        self._state = "lead" if dialect.leading else "text"
        self._raw = ""  # the current call's text, to give back if it is not a call
        self._reader = dialect.make_reader(tools)
        self._begun = False  # the current call text produced a tool_use block
        self._skipping = False  # inside a call to drop (unknown name after others, or past one)
        self._rejected = False  # the call text named no offered tool: it goes back as text

    def feed(self, text: str) -> list[GenerationEvent]:
        self._buffer += text
        out: list[GenerationEvent] = []
        while self._buffer:
            if self._state == "lead":
                if not self._lead(out):
                    break
            elif self._state in ("text", "plain"):
                if not self._text(out):
                    break
            else:
                if not self._call(out):
                    break
        return out

    def _lead(self, out: list[GenerationEvent]) -> bool:
        """Leading dialects: a call counts only as the first thing written (after whitespace
        and the preamble)."""
        start, preamble = self.dialect.start, self.dialect.preamble
        written = self._buffer.lstrip()
        if preamble.startswith(written):
            return False  # nothing yet but whitespace or part of the preamble
        if preamble and written.startswith(preamble):
            written = written[len(preamble) :].lstrip()
        if written.startswith(start):
            self._open_call(written[len(start) :])
            return True
        if start.startswith(written):
            return False
        self._state = "plain"
        out.append(TextDelta(text=self._buffer))
        self._buffer = ""
        return False

    def _text(self, out: list[GenerationEvent]) -> bool:
        """Plain text up to a call's start marker; True when a call opened."""
        if self._state == "plain" or (self.single and self.calls):
            out.append(TextDelta(text=self._buffer))
            self._buffer = ""
            return False
        index = self._buffer.find(self.dialect.start) if not self.dialect.leading else -1
        if index < 0:
            keep = held_prefix(self._buffer, self.dialect.start) if not self.dialect.leading else 0
            emit = self._buffer[: len(self._buffer) - keep]
            self._buffer = self._buffer[len(emit) :]
            if emit:
                out.append(TextDelta(text=emit))
            return False
        if index:
            out.append(TextDelta(text=self._buffer[:index]))
        self._open_call(self._buffer[index + len(self.dialect.start) :])
        return True

    def _open_call(self, rest: str) -> None:
        self._state, self._buffer = "call", rest
        self._raw, self._begun, self._skipping, self._rejected = self.dialect.start, False, False, False
        self._reader = self.dialect.make_reader(self.tools)

    def _call(self, out: list[GenerationEvent]) -> bool:
        end = self.dialect.end
        index = self._buffer.find(end) if end else -1
        if index < 0:
            keep = held_prefix(self._buffer, end) if end else 0
            body = self._buffer[: len(self._buffer) - keep]
            self._buffer = self._buffer[len(body) :]
            self._read(out, body)
            return False
        body, self._buffer = self._buffer[:index], self._buffer[index + len(end) :]
        self._read(out, body)
        self._raw += end
        self._close_call(out)
        self._state = "plain" if self.dialect.leading else "text"
        return True

    def _read(self, out: list[GenerationEvent], body: str) -> None:
        if not body:
            return
        self._raw += body
        try:
            events = self._reader.feed(body)
        except _UNREADABLE as exc:  # the close below gives the call text back or ends the call
            log.warning("tool_call_unreadable", dialect=self.dialect.name, error=str(exc))
            events = []
        self._translate(out, events)

    def _close_call(self, out: list[GenerationEvent]) -> None:
        if not self._rejected:
            try:
                events = self._reader.close()
            except _UNREADABLE as exc:
                log.warning("tool_call_unparsed", dialect=self.dialect.name, error=str(exc), chars=len(self._raw))
                events = [] if self._begun else [Loose(self._raw)]
            self._translate(out, events)
        if self._rejected:
            out.append(TextDelta(text=self._raw))

    def _translate(self, out: list[GenerationEvent], events: list[ReaderEvent]) -> None:
        for event in events:
            if self._rejected:
                continue
            if isinstance(event, Begin):
                if event.name in self.names and not (self.single and self.calls):
                    self._skipping, self._begun = False, True
                    out.append(ToolUseStart(id=tool_use_id(), name=event.name))
                    continue
                unknown = event.name not in self.names
                log.warning(
                    "tool_call_dropped",
                    dialect=self.dialect.name,
                    name=event.name,
                    reason="unknown tool" if unknown else "one call allowed",
                )
                # Nothing of this call text went out yet: all of it goes back as text.
                self._rejected = unknown and not self._begun
                self._skipping = True
            elif isinstance(event, InputDelta):
                if not self._skipping:
                    out.append(ToolInputDelta(partial_json=event.json))
            elif isinstance(event, End):
                if not self._skipping:
                    self.calls += 1
                    out.append(ToolUseEnd(input=event.input))
                self._skipping = False
            elif isinstance(event, Loose) and event.text:
                out.append(TextDelta(text=event.text))

    def finish(self) -> list[GenerationEvent]:
        out: list[GenerationEvent] = []
        buffer, self._buffer = self._buffer, ""
        if self._state == "call":
            self._read(out, buffer)
            self._close_call(out)
        elif buffer:
            out.append(TextDelta(text=buffer))
        self._state = "plain" if self.dialect.leading else "text"
        return out
