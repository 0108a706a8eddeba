"""JSON in <tool_call> tags: Hermes 2/3, Qwen2.5, Qwen3 and most ChatML tool templates.

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

from .base import Dialect
from .json_call import JsonCallReader

DIALECT = Dialect(
    name="hermes",
    start="<tool_call>",
    end="</tool_call>",
    make_reader=lambda tools: JsonCallReader(),
    arguments_key="arguments",
    families=("Hermes 2/3", "Qwen2.5", "Qwen3"),
)
