"""Grammar pieces for constrained decoding (llguidance's Lark with %json), shared by dialects:
one rule per offered tool, `call{i}`, that spells a valid call of that tool."""

from __future__ import annotations

import json
from typing import Any, Protocol

# How JSON is spaced in a call: `style` is llguidance's JSON options for %json.
Style = dict[str, Any]


class CallRule(Protocol):
    def __call__(self, index: int, name: str, schema: dict[str, Any], style: Style) -> str:
        """Lark text defining rule `call{index}` (and helpers named `call{index}_…`)."""
        ...


def closed(schema: Any) -> Any:
    """The schema with objects that list their properties closed to others (unless it says
    otherwise): still valid output, and the model cannot invent keys without end."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def json_value(schema: dict[str, Any], style: Style) -> str:
    return f"%json {json.dumps({**closed(schema), 'x-guidance': style})}"


def json_call_rule(arguments_key: str) -> CallRule:
    """Calls written as {"name": <tool>, <arguments_key>: <input>}."""

    def rule(index: int, name: str, schema: dict[str, Any], style: Style) -> str:
        call = {
            "type": "object",
            "properties": {"name": {"const": name}, arguments_key: schema or {"type": "object"}},
            "required": ["name", arguments_key],
        }
        return f"call{index}: {json_value(call, style)}\n"

    return rule
