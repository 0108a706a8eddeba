"""Mistral's [TOOL_CALLS]: a JSON list of calls (v3 templates), or name[ARGS]{...} repeated
(v11 and later, e.g. Mistral Small 3.2, Devstral); the calls run to the end of the answer.

    [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]
    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}
"""

from __future__ import annotations

import re
from typing import Any

from mlx_lm.tool_parsers.mistral import parse_tool_call

from .base import CallGrammar, Dialect, Literal, ReaderEvent
from .grammar import json_call_rule
from .json_call import OBJECT_HEAD, JsonCallReader

START = "[TOOL_CALLS]"

# name[ARGS] — later calls repeat the [TOOL_CALLS] marker.
_HEADER_HEAD = re.compile(r"\s*(?:\[TOOL_CALLS\])?\s*(?P<name>[\w.-]+)\s*\[ARGS\]\s*")


class MistralReader:
    """Decides the form from the first character, then reads like the other JSON dialects;
    what does not stream is parsed whole with mlx-lm's Mistral parser."""

    def __init__(self) -> None:
        self.reader: JsonCallReader | None = None
        self.held = ""

    def feed(self, text: str) -> list[ReaderEvent]:
        if self.reader is None:
            self.held += text
            first = self.held.lstrip()[:1]
            if not first:
                return []
            head = OBJECT_HEAD if first == "[" else _HEADER_HEAD
            self.reader = JsonCallReader(head, closes_object=first == "[", parse=_parse)
            text, self.held = self.held, ""
        return self.reader.feed(text)

    def close(self) -> list[ReaderEvent]:
        if self.reader is None:
            self.reader = JsonCallReader(parse=_parse)
            self.reader.feed(self.held)
        return self.reader.close()


def _parse(text: str) -> Any:
    return parse_tool_call(text.strip())


def grammar(call: str, lit: Literal) -> CallGrammar:
    return CallGrammar(single=f'{lit(START)} "[" {call} "]"', after_start=f'"[" {call} (", " {call})* "]"')


DIALECT = Dialect(
    name="mistral",
    start=START,
    end="",
    make_reader=lambda tools: MistralReader(),
    call_rule=json_call_rule("arguments"),
    grammar=grammar,
    families=("Mistral 7B v0.3", "Mistral Small/Nemo", "Devstral"),
)
