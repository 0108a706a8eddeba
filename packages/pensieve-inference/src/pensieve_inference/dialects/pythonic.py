"""Pythonic calls: a Python list of calls, bare at the start of the answer (Llama 3.2, Llama 4)
or inside <|tool_call_start|> tags (LFM2). Parsed whole with mlx-lm's pythonic parser: Python
arguments are not JSON, so the input goes out once the call is read.

    [get_weather(city="Paris"), get_time(zone="CET")]
"""

from __future__ import annotations

from typing import Any

from mlx_lm.tool_parsers.pythonic import parse_tool_call

from .base import Dialect
from .mlx_parser import WholeCallReader


def _bracketed(text: str, tools: Any = None) -> Any:
    """The bare form's opening bracket was taken as the start marker: put it back."""
    return parse_tool_call("[" + text, tools)


TAGGED = Dialect(
    name="pythonic",
    start="<|tool_call_start|>",
    end="<|tool_call_end|>",
    make_reader=lambda tools: WholeCallReader(parse_tool_call, tools),
    families=("LFM2",),
)

BARE = Dialect(
    name="pythonic_bare",
    start="[",
    end="",
    make_reader=lambda tools: WholeCallReader(_bracketed, tools),
    leading=True,
    families=("Llama 3.2", "Llama 4"),
)
