"""For templates that know nothing of tools (Phi-3, SmolLM2): the tools are described in the
system text and the model is asked to answer in the Hermes form, which this reads back."""

from __future__ import annotations

import json
from typing import Any

from .base import Dialect
from .grammar import json_call_rule
from .hermes import grammar
from .json_call import JsonCallReader

START, END = "<tool_call>", "</tool_call>"

DIALECT = Dialect(
    name="generic",
    start=START,
    end=END,
    make_reader=lambda tools: JsonCallReader(),
    call_rule=json_call_rule("arguments"),
    grammar=grammar,
    families=("templates without tool support",),
)


def system_text(tools: list[dict[str, Any]]) -> str:
    """The tool instructions appended to the system prompt (tools as OpenAI function specs)."""
    listing = "\n".join(
        json.dumps(
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters", {}),
            },
            ensure_ascii=False,
        )
        for t in tools
    )
    return (
        "# Tools\n\n"
        "You may call one or more of the tools below. To call a tool, reply with a JSON object "
        f"naming it and giving its arguments, inside {START}{END} tags:\n"
        f'{START}\n{{"name": "tool name", "arguments": {{"arg": "value"}}}}\n{END}\n'
        "Tool results come back inside <tool_result></tool_result> tags.\n\n"
        f"Available tools:\n{listing}"
    )


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """An earlier call, written back into the conversation the way the model was asked to."""
    return f"{START}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{END}"
