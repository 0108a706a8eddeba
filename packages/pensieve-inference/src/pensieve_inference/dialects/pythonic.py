"""Pythonic calls: a Python list of calls, bare at the start of the answer (Llama 3.2, Llama 4)
or inside <|tool_call_start|> tags (LFM2). Parsed whole with mlx-lm's pythonic parser: Python
arguments are not JSON, so the input goes out once the call is read. Constrained calls are
written with JSON values, which Python reads as well.

    [get_weather(city="Paris"), get_time(zone="CET")]
"""

from __future__ import annotations

from typing import Any

from mlx_lm.tool_parsers.pythonic import parse_tool_call

from .base import CallGrammar, Dialect, Literal
from .grammar import Style, closed, json_value
from .mlx_parser import WholeCallReader


def _bracketed(text: str, tools: Any = None) -> Any:
    """The bare form's opening bracket was taken as the start marker: put it back."""
    return parse_tool_call("[" + text, tools)


def call_rule(index: int, name: str, schema: dict[str, Any], style: Style) -> str:
    """NAME(key=value, ...): required arguments, then optional ones, in schema order; values as
    JSON, which is also Python (the parser reads true/false/null too)."""
    schema = closed(schema)
    properties = schema.get("properties") or {}
    required = [k for k in schema.get("required", []) if k in properties]
    optional = [k for k in properties if k not in required]
    rules = [
        f'call{index}_{j}: "{key}=" {json_value(properties[key] or {}, style)}\n'
        for j, key in enumerate(required + optional)
    ]
    first_optional = len(required)
    names = [f"call{index}_{j}" for j in range(len(required) + len(optional))]
    tail = "".join(f' (", " {n})?' for n in names[first_optional:])
    if required:
        arguments = ' ", " '.join(names[:first_optional]) + tail
    elif optional:  # all optional: any of them may come first
        starts = [
            n + "".join(f' (", " {m})?' for m in names[first_optional + i + 1 :])
            for i, n in enumerate(names[first_optional:])
        ]
        arguments = "(" + " | ".join(starts) + ")?"
    else:
        arguments = ""
    return f'call{index}: "{name}(" {arguments} ")"\n' + "".join(rules)


def tagged_grammar(call: str, lit: Literal) -> CallGrammar:
    start, end = lit("<|tool_call_start|>"), lit("<|tool_call_end|>")
    return CallGrammar(single=f'{start} "[" {call} "]" {end}', after_start=f'"[" {call} (", " {call})* "]" {end}')


TAGGED = Dialect(
    name="pythonic",
    start="<|tool_call_start|>",
    end="<|tool_call_end|>",
    make_reader=lambda tools: WholeCallReader(parse_tool_call, tools),
    call_rule=call_rule,
    grammar=tagged_grammar,
    families=("LFM2",),
)

BARE = Dialect(
    name="pythonic_bare",
    start="[",
    end="",
    make_reader=lambda tools: WholeCallReader(_bracketed, tools),
    leading=True,
    call_rule=call_rule,
    # The answer's own "[" starts the call: a forced call can be constrained, a chosen one not.
    grammar=lambda call, lit: CallGrammar(single=f'"[" {call} "]"', after_start=None),
    families=("Llama 3.2", "Llama 4"),
)
