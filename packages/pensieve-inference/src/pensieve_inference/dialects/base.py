"""What every tool-call dialect provides: the markers around a call in the model's output, and
a reader that turns the text between them into calls, incrementally where the format allows.

A reader sees only the call text (after the start marker, before the end marker) and says
what it found as `Begin` (a call's name is known), `InputDelta` (more of its input as JSON
text, always a prefix of a valid JSON object) and `End` (the input, parsed). `Loose` is text
it could not make sense of, handed back as text."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .grammar import CallRule
from .json_text import loads_lenient

ToolSpecs = list[dict[str, Any]]  # OpenAI-style function entries, as chat templates take them


class MalformedCall(ValueError):
    """The call text cannot be read as a call: it goes back to the client as text."""


@dataclass(frozen=True)
class Begin:
    name: str


@dataclass(frozen=True)
class InputDelta:
    json: str


@dataclass(frozen=True)
class End:
    input: dict[str, Any]


@dataclass(frozen=True)
class Loose:
    text: str


ReaderEvent = Begin | InputDelta | End | Loose

# Renders marker text as a grammar literal (a special token by its id, other text quoted).
Literal = Callable[[str], str]


@dataclass(frozen=True)
class CallGrammar:
    """Lark expressions for a dialect's calls, given a rule `call` for one call's JSON object:
    the whole answer as one call, and the rest of a call (or calls) after its start marker
    (None: the dialect's start is not a marker the grammar can follow from)."""

    single: str
    after_start: str | None


class CallReader(Protocol):
    def feed(self, text: str) -> list[ReaderEvent]:
        """More call text; events for what became certain."""
        ...

    def close(self) -> list[ReaderEvent]:
        """The call text is complete (end marker, or the output ended). Raises MalformedCall
        only if it emitted no Begin: once a call has begun, it must be ended (repaired)."""
        ...


@dataclass(frozen=True)
class Dialect:
    name: str
    # What opens a call in the output, and what closes it ("" = the call runs to the end).
    start: str
    end: str
    make_reader: Callable[[ToolSpecs], CallReader]
    # True when the start only counts as the first thing the model writes (Llama 3's bare JSON).
    leading: bool = False
    # Text a leading call may come after (Llama's <|python_tag|>), besides whitespace.
    preamble: str = ""
    # For constrained decoding: one tool's call as a grammar rule, and the calls laid out with
    # the dialect's markers (None: this dialect's calls are not constrained).
    call_rule: CallRule | None = None
    grammar: Callable[[str, Literal], CallGrammar] | None = None
    # Which templates the dialect is for, shown in logs and docs.
    families: tuple[str, ...] = field(default=())


def parsed_calls(parsed: Any) -> list[ReaderEvent]:
    """Events for calls a parser returned whole ({"name", "arguments" or "parameters"}, or a
    list of them); arguments given as a JSON string are read. MalformedCall if they are not calls."""
    events: list[ReaderEvent] = []
    for call in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise MalformedCall("a tool call must be an object with a name")
        arguments = call.get("arguments", call.get("parameters")) or {}
        if isinstance(arguments, str):
            try:
                arguments = loads_lenient(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise MalformedCall(f"tool call arguments are not JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise MalformedCall("tool call arguments must be an object")
        events += [Begin(call["name"]), InputDelta(json.dumps(arguments, ensure_ascii=False)), End(arguments)]
    if not events:
        raise MalformedCall("no tool call in the text")
    return events


def tool_schema(tools: ToolSpecs, name: str) -> dict[str, Any]:
    for tool in tools:
        function = tool.get("function", tool)
        if function.get("name") == name:
            return function.get("parameters") or {}
    return {}
