"""The reader shared by dialects whose calls carry JSON arguments (Hermes/Qwen tags, Llama 3,
Mistral): once a call's name is read, its arguments stream as they are written, checked
character by character; a call cut short is closed, one that breaks is closed where it broke
and the rest handed back as text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import structlog

from .base import Begin, End, InputDelta, Loose, MalformedCall, ReaderEvent, parsed_calls
from .json_text import JsonScanner, close_json, loads_lenient

log = structlog.get_logger("pensieve.tools")

# Past this many characters without a recognisable head, stop looking and parse at the end.
_HEAD_WINDOW = 400

# {"name": "x", "arguments": — the object form; separators between calls may precede it.
OBJECT_HEAD = re.compile(
    r'\s*[\[,;]?\s*\{\s*"name"\s*:\s*"(?P<name>(?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*'
)

# What may sit between and after calls (a list's brackets and commas, Llama's semicolons).
_BETWEEN_CALLS = " \t\r\n[],;"

Parse = Callable[[str], Any]


class JsonCallReader:
    """Reads calls of the form <head naming the call><JSON object of arguments><tail>, one after
    another. `head` must end where the arguments begin; `closes_object` says the call sits in
    a JSON object whose closing brace follows the arguments."""

    def __init__(
        self, head: re.Pattern[str] = OBJECT_HEAD, *, closes_object: bool = True, parse: Parse | None = None
    ) -> None:
        self.head = head
        self.closes_object = closes_object
        self.parse = parse or loads_lenient
        self.raw = ""  # the whole call text, for the fallback parse
        self.pending = ""  # text not yet placed
        self.state = "head"  # head | args | tail | buffered | broken
        self.scanner = JsonScanner()
        self.emitted = 0  # how much of the arguments went out as InputDelta
        self.parsed: dict[str, Any] | None = None  # arguments that came as a JSON string
        self.began = 0

    def feed(self, text: str) -> list[ReaderEvent]:
        self.raw += text
        if self.state in ("buffered", "broken"):
            self.pending += text
            return []
        self.pending += text
        events: list[ReaderEvent] = []
        while self.pending:
            if self.state == "head":
                match = self.head.match(self.pending)
                if match is None:
                    if len(self.pending) > _HEAD_WINDOW and not self.began:
                        self.state = "buffered"
                    break
                try:
                    name = json.loads(f'"{match.group("name")}"')
                except ValueError:  # a broken escape: leave it to the whole parse at the end
                    self.state = "buffered"
                    break
                self.pending = self.pending[match.end() :]
                self.state, self.scanner, self.emitted, self.parsed = "args", JsonScanner(), 0, None
                self.began += 1
                events.append(Begin(name))
            elif self.state == "args":
                used = self.scanner.feed(self.pending)
                self.pending = self.pending[used:]
                clean = self.scanner.clean
                first = clean.lstrip()[:1]
                if first == '"':  # arguments written as a JSON string: read once complete
                    if self.scanner.error:
                        events += self._break_off()
                        break
                    if not self.scanner.done:
                        break
                    events += self._string_arguments()
                    continue
                if first and first != "{":
                    events += self._break_off()
                    break
                if self.scanner.safe > self.emitted:
                    events.append(InputDelta(clean[self.emitted : self.scanner.safe]))
                    self.emitted = self.scanner.safe
                if self.scanner.error:
                    events += self._break_off()
                    break
                if not self.scanner.done:
                    break
                self.state = "tail" if self.closes_object else "head"
                if not self.closes_object:
                    events.append(self._end())
            elif self.state == "tail":
                stripped = self.pending.lstrip()
                if not stripped:
                    self.pending = ""
                    break
                if stripped[0] != "}":
                    events += self._break_off()
                    break
                self.pending = stripped[1:]
                self.state = "head"
                events.append(self._end())
        return events

    def _end(self) -> End:
        return End(self.parsed if self.parsed is not None else json.loads(self.scanner.clean))

    def _string_arguments(self) -> list[ReaderEvent]:
        """Some models write the arguments as a string holding JSON: send it parsed."""
        text = json.loads(self.scanner.clean)
        try:
            value = loads_lenient(text) if text.strip() else {}
        except ValueError:
            value = None
        if not isinstance(value, dict):
            return self._break_off()
        self.parsed = value
        self.state = "tail" if self.closes_object else "head"
        events: list[ReaderEvent] = [InputDelta(json.dumps(value, ensure_ascii=False))]
        if not self.closes_object:
            events.append(self._end())
        return events

    def _break_off(self) -> list[ReaderEvent]:
        """The text stopped being a call mid-way: close what streamed, give back the rest."""
        log.warning("tool_call_repaired", streamed=self.scanner.clean[-80:], rest=self.pending[:80])
        events: list[ReaderEvent] = []
        if self.state == "args":
            closed = close_json(self.scanner.clean) if self.emitted else ""
            if not closed.startswith("{"):
                closed = "{}"
            if closed[self.emitted :]:
                events.append(InputDelta(closed[self.emitted :]))
            events.append(End(json.loads(closed)))
        self.state = "broken"
        return events

    def close(self) -> list[ReaderEvent]:
        if self.state == "buffered" or (self.state == "head" and not self.began):
            try:
                return parsed_calls(self.parse(self.raw))
            except (ValueError, SyntaxError, TypeError) as exc:
                if self.began:
                    return [Loose(self.pending)] if self.pending.strip() else []
                raise MalformedCall(str(exc)) from exc
        events: list[ReaderEvent] = []
        if self.state == "args":
            self.scanner.finish()
            if self.scanner.done:
                events.append(self._end())
            else:  # cut short (max_tokens, or the end marker came early)
                events += self._break_off()
        elif self.state == "tail":
            events.append(self._end())
        if self.pending.strip(_BETWEEN_CALLS):
            events.append(Loose(self.pending))
        return events
