"""JSON in <tool_call> tags: Hermes 2/3, Qwen2.5, Qwen3 and most ChatML tool templates.

<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>
"""

from __future__ import annotations

from .base import CallGrammar, Dialect, Literal
from .grammar import json_call_rule
from .json_call import JsonCallReader


def grammar(call: str, lit: Literal) -> CallGrammar:
    one = f'{lit("<tool_call>")} "\\n" {call} "\\n" {lit("</tool_call>")}'
    return CallGrammar(single=one, after_start=f'"\\n"? {call} "\\n"? {lit("</tool_call>")}')


DIALECT = Dialect(
    name="hermes",
    start="<tool_call>",
    end="</tool_call>",
    make_reader=lambda tools: JsonCallReader(),
    call_rule=json_call_rule("arguments"),
    grammar=grammar,
    families=("Hermes 2/3", "Qwen2.5", "Qwen3"),
)
