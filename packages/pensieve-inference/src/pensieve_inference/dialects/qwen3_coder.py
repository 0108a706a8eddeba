"""Qwen3-Coder's XML calls: one <parameter> element per argument, values as plain text and
typed by the tool's schema. Each argument streams as soon as its element closes.

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import structlog

from .base import (
    Begin,
    CallGrammar,
    Dialect,
    End,
    InputDelta,
    Literal,
    Loose,
    MalformedCall,
    ReaderEvent,
    ToolSpecs,
    tool_schema,
)
from .grammar import Style, closed, json_value

log = structlog.get_logger("pensieve.tools")

_FUNCTION = re.compile(r"\s*<function=(?P<name>[^>\n]+)>")
_PARAMETER = re.compile(r"\s*<parameter=(?P<key>[^>\n]+)>\n?(?P<value>.*?)\n?</parameter>", re.DOTALL)
_FUNCTION_END = re.compile(r"\s*</function>")


def typed_value(text: str, schema: dict[str, Any]) -> Any:
    """A parameter's text as the type its schema names; the text itself when it reads as none."""
    enum = schema.get("enum")
    if schema.get("type") == "string" or (enum and all(isinstance(e, str) for e in enum)):
        return text
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    if schema.get("type") in ("object", "array"):
        try:  # Python literals ('single quotes', True) are unambiguous here
            value = ast.literal_eval(stripped)
            json.dumps(value)
            return value
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return text


class Qwen3CoderReader:
    def __init__(self, tools: ToolSpecs) -> None:
        self.tools = tools
        self.pending = ""
        self.name: str | None = None
        self.properties: dict[str, Any] = {}
        self.input: dict[str, Any] = {}
        self.done = False

    def feed(self, text: str) -> list[ReaderEvent]:
        self.pending += text
        events: list[ReaderEvent] = []
        while not self.done:
            if self.name is None:
                match = _FUNCTION.match(self.pending)
                if match is None:
                    break
                self.name = match.group("name").strip()
                self.properties = tool_schema(self.tools, self.name).get("properties", {})
                events.append(Begin(self.name))
            elif match := _PARAMETER.match(self.pending):
                key = match.group("key").strip()
                value = typed_value(match.group("value"), self.properties.get(key, {}))
                opener = ", " if self.input else "{"
                self.input[key] = value
                events.append(InputDelta(f"{opener}{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"))
            elif match := _FUNCTION_END.match(self.pending):
                events += self._end()
            else:
                break
            self.pending = self.pending[match.end() :]
        return events

    def _end(self) -> list[ReaderEvent]:
        self.done = True
        return [InputDelta("}" if self.input else "{}"), End(dict(self.input))]

    def close(self) -> list[ReaderEvent]:
        if self.name is None:
            raise MalformedCall(f"no <function=...> in {self.pending[:80]!r}")
        events: list[ReaderEvent] = []
        if not self.done:
            if self.pending.strip():
                log.warning("tool_call_repaired", dropped=self.pending[:80])
            events += self._end()
        elif self.pending.strip():  # text after </function>
            events.append(Loose(self.pending))
        return events


def _text_value(rule: str, schema: dict[str, Any]) -> str:
    """A string parameter: plain text up to the closing tag (lazy: it ends at the first one),
    within the schema's length bounds."""
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    repeat = f"{{{low},{high}}}" if high is not None else f"{{{low},}}" if low else "*"
    return f'{rule}[lazy]: /(?s:.{repeat})/ "\\n</parameter>"\n'


def call_rule(index: int, name: str, schema: dict[str, Any], style: Style) -> str:
    """<function=NAME> with the required parameters, then the optional ones, in schema order;
    string values as text, others as JSON (as the parser reads them back)."""
    schema = closed(schema)
    properties = schema.get("properties") or {}
    required = [k for k in schema.get("required", []) if k in properties]
    rules, parts = [], []
    for j, key in enumerate(required + [k for k in properties if k not in required]):
        prop, rule = properties[key] or {}, f"call{index}_{j}"
        value = f"{rule}_v"
        strings = prop.get("enum") and all(isinstance(e, str) for e in prop["enum"])
        if prop.get("type") == "string" and not strings:  # free text ends at its closing tag
            rules.append(_text_value(value, prop))
            rules.append(f'{rule}: "<parameter={key}>\\n" {value} "\\n"\n')
        else:
            body = " | ".join(json.dumps(e) for e in prop["enum"]) if strings else json_value(prop, style)
            rules.append(f"{value}: {body}\n")
            rules.append(f'{rule}: "<parameter={key}>\\n" {value} "\\n</parameter>\\n"\n')
        parts.append(rule if key in required else f"{rule}?")
    head = f'call{index}: "<function={name}>\\n" {" ".join(parts)} "</function>"\n'
    return head + "".join(rules)


def grammar(call: str, lit: Literal) -> CallGrammar:
    end = lit("</tool_call>")
    return CallGrammar(single=f'{lit("<tool_call>")} "\\n" {call} "\\n" {end}', after_start=f'"\\n" {call} "\\n" {end}')


DIALECT = Dialect(
    name="qwen3_coder",
    start="<tool_call>",
    end="</tool_call>",
    make_reader=Qwen3CoderReader,
    call_rule=call_rule,
    grammar=grammar,
    families=("Qwen3-Coder",),
)
