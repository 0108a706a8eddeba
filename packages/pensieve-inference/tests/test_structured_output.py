"""Structured outputs: with output_config.format, even a random-weight model's text answer is
one JSON value valid against the schema, and the turn then ends."""

import asyncio
import json

import jsonschema
import pytest

from pensieve_claude_types import MessageParam, ThinkingEnabled, Tool, ToolChoiceAuto
from pensieve_core import Finished, GenerationRequest, TextDelta, ThinkingDelta, ToolUseEnd
from pensieve_core.errors import InvalidRequestError
from pensieve_model_support.testing import build_tiny_model

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 12},
        "mood": {"enum": ["calm", "busy", "lost"]},
        "turns": {"type": "integer", "minimum": 1, "maximum": 9},
    },
    "required": ["title", "mood", "turns"],
}


def request(schema=SCHEMA, text="Name this session.", **kw):
    return GenerationRequest(
        messages=[MessageParam(role="user", content=text)], max_tokens=400, temperature=1.0, output_schema=schema, **kw
    )


async def collect(engine, req):
    return [e async for e in engine.generate(req)]


def answer_of(events):
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.stop_reason == "end_turn", events[-3:]
    return json.loads("".join(e.text for e in events if isinstance(e, TextDelta)))


def test_twenty_answers_at_temperature_one_all_parse_and_validate(engine):
    async def run():
        return await asyncio.gather(*(collect(engine, request(text=f"Session {i}")) for i in range(20)))

    for events in asyncio.run(run()):
        jsonschema.validate(answer_of(events), SCHEMA)


LOOKUP = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 12}}, "required": ["q"]}


def test_under_auto_the_answer_is_a_valid_structured_text_or_one_valid_call(tmp_path):
    """Tools offered under auto (a Qwen-style template): each answer is either the structured
    text or one call whose input validates, never free text."""
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE

    path = build_tiny_model(tmp_path / "tools", chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True)
    model = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    tools = [Tool(name="lookup", input_schema=LOOKUP, strict=True)]
    try:

        async def run():
            reqs = [request(text=f"Q{i}", tools=tools, tool_choice=ToolChoiceAuto()) for i in range(12)]
            return await asyncio.gather(*(collect(model, r) for r in reqs))

        for events in asyncio.run(run()):
            if events[-1].stop_reason == "tool_use":
                (end,) = [e for e in events if isinstance(e, ToolUseEnd)]
                jsonschema.validate(end.input, LOOKUP)
                assert not [e for e in events if isinstance(e, TextDelta)]
            else:
                jsonschema.validate(answer_of(events), SCHEMA)
    finally:
        model._worker.stop()


@pytest.mark.parametrize("keyword", ["not", "dependentSchemas", "unevaluatedProperties"])
def test_a_schema_keyword_llguidance_cannot_enforce_is_an_invalid_request_naming_it(engine, keyword):
    schema = {"type": "object", keyword: {"type": "string"} if keyword == "not" else {}}
    with pytest.raises(InvalidRequestError, match=rf'output_config\.format\.schema.*"{keyword}"'):
        asyncio.run(collect(engine, request(schema)))


def test_a_strict_tool_with_a_schema_we_cannot_enforce_is_an_invalid_request(engine):
    strict = Tool(name="f", strict=True, input_schema={"type": "object", "not": {"required": ["x"]}})
    req = GenerationRequest(
        messages=[MessageParam(role="user", content="Hi")], max_tokens=8, tools=[strict], tool_choice=ToolChoiceAuto()
    )
    with pytest.raises(InvalidRequestError, match=r'tools\[0\]\.input_schema.*"not"'):
        asyncio.run(collect(engine, req))


def test_a_thinking_model_thinks_freely_then_answers_in_the_schema(tmp_path):
    """Thinking open from the prompt (its budget ends it): the thinking is not held to the
    schema; the answer after it is."""
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import THINK_CHATML_TEMPLATE

    path = build_tiny_model(tmp_path / "thinker", chat_template=THINK_CHATML_TEMPLATE, think_tokens=True)
    thinker = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    try:

        async def run():
            reqs = [request(text=f"Q{i}", thinking=ThinkingEnabled(budget_tokens=6)) for i in range(4)]
            return await asyncio.gather(*(collect(thinker, r) for r in reqs))

        for events in asyncio.run(run()):
            assert [e for e in events if isinstance(e, ThinkingDelta)]
            jsonschema.validate(answer_of(events), SCHEMA)
    finally:
        thinker._worker.stop()
