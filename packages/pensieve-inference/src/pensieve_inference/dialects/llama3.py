"""Llama 3.1/3.3 JSON tool calls: the answer itself is the call, a JSON object with
"parameters", optionally after <|python_tag|>; several are separated by semicolons.

    {"name": "get_weather", "parameters": {"city": "Paris"}}
"""

from __future__ import annotations

from .base import CallGrammar, Dialect, ReaderEvent
from .grammar import json_call_rule
from .json_call import JsonCallReader

DIALECT = Dialect(
    name="llama3_json",
    start="{",
    end="",
    # The brace that opened the call was consumed as the marker: the reader gets it back.
    make_reader=lambda tools: _Reopened(JsonCallReader()),
    leading=True,
    preamble="<|python_tag|>",
    call_rule=json_call_rule("parameters"),
    # The call's own brace is its start: a forced call can be constrained, a chosen one not.
    grammar=lambda call, lit: CallGrammar(single=call, after_start=None),
    families=("Llama 3.1", "Llama 3.3"),
)


class _Reopened:
    """Puts the consumed opening brace back in front of the call text."""

    def __init__(self, reader: JsonCallReader) -> None:
        self.reader = reader
        self.first = True

    def feed(self, text: str) -> list[ReaderEvent]:
        if self.first:
            self.first = False
            text = "{" + text
        return self.reader.feed(text)

    def close(self) -> list[ReaderEvent]:
        if self.first:
            self.feed("")
        return self.reader.close()
