"""Constrained decoding: a random-weight model, forced to call a tool, always writes a call
whose input validates against the tool's schema."""

import asyncio
import json

import jsonschema
import pytest

from pensieve_claude_types import MessageParam, Tool, ToolChoiceAny, ToolChoiceTool
from pensieve_core import Finished, GenerationRequest, TextDelta, ToolInputDelta, ToolUseEnd, ToolUseStart
from pensieve_core.errors import InvalidRequestError
from pensieve_model_support.testing import build_tiny_model

SCHEMAS = {
    "get_weather": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["city"],
    },
    "read_file": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "maxLength": 40},
            "offset": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
        "required": ["file_path"],
        "additionalProperties": False,
    },
    "run": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "maxLength": 40},
            "background": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["command", "background"],
    },
}
TOOLS = [Tool(name=name, description=f"The {name} tool.", input_schema=schema) for name, schema in SCHEMAS.items()]


def request(choice, tools=TOOLS, text="What should I do?", **kw):
    kw.setdefault("max_tokens", 200)
    return GenerationRequest(
        messages=[MessageParam(role="user", content=text)], tools=tools, tool_choice=choice, temperature=1.0, **kw
    )


async def collect(engine, req):
    return [e async for e in engine.generate(req)]


def calls_of(events):
    """(name, input) per tool_use, checking the streamed JSON spells the final input."""
    calls, current = [], None
    for e in events:
        if isinstance(e, ToolUseStart):
            current = [e.name, ""]
        elif isinstance(e, ToolInputDelta):
            current[1] += e.partial_json
        elif isinstance(e, ToolUseEnd):
            assert json.loads(current[1]) == e.input
            calls.append((current[0], e.input))
    return calls


async def many(engine, reqs):
    return await asyncio.gather(*(collect(engine, r) for r in reqs))


@pytest.fixture(scope="module", params=["generic", "hermes", "qwen3_coder", "pythonic_bare"])
def tool_engine(request, tmp_path_factory):
    """The tiny model with a template that knows no tools (the generic convention, markers as
    text), with a Qwen-style tool template (JSON calls, markers as special tokens), and with a
    Qwen3-Coder-style one (XML calls), and a Llama 3.2-style one (pythonic calls)."""
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import PYTHONIC_TEMPLATE, QWEN3_CODER_TEMPLATE, TOOL_CHATML_TEMPLATE

    template = {
        "generic": None,
        "hermes": TOOL_CHATML_TEMPLATE,
        "qwen3_coder": QWEN3_CODER_TEMPLATE,
        "pythonic_bare": PYTHONIC_TEMPLATE,
    }[request.param]
    if template is None:
        path = build_tiny_model(tmp_path_factory.mktemp("generic"))
    else:
        path = build_tiny_model(tmp_path_factory.mktemp(request.param), chat_template=template, tool_tokens=True)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    assert engine._renderer.dialect.name == request.param
    yield engine
    engine._worker.stop()


def check(results, allowed):
    for events in results:
        finished = events[-1]
        assert isinstance(finished, Finished) and finished.stop_reason == "tool_use", events
        assert not [e for e in events if isinstance(e, TextDelta)], "no text around a forced call"
        calls = calls_of(events)
        assert calls
        for name, arguments in calls:
            assert name in allowed
            jsonschema.validate(arguments, SCHEMAS[name])


def test_fifty_forced_calls_of_one_tool_all_validate(tool_engine):
    choice = ToolChoiceTool(name="read_file")
    results = asyncio.run(many(tool_engine, [request(choice, text=f"Question {i}") for i in range(50)]))
    check(results, {"read_file"})


def test_fifty_calls_under_any_all_validate(tool_engine):
    results = asyncio.run(many(tool_engine, [request(ToolChoiceAny(), text=f"Question {i}") for i in range(50)]))
    check(results, set(SCHEMAS))


@pytest.mark.parametrize("name", ["get_weather", "run"])
def test_each_tool_can_be_forced(tool_engine, name):
    results = asyncio.run(many(tool_engine, [request(ToolChoiceTool(name=name), text=f"Q{i}") for i in range(5)]))
    check(results, {name})


def test_one_call_when_parallel_use_is_disabled(tool_engine):
    choice = ToolChoiceAny(disable_parallel_tool_use=True)
    results = asyncio.run(many(tool_engine, [request(choice, text=f"Q{i}") for i in range(8)]))
    check(results, set(SCHEMAS))
    assert all(len(calls_of(events)) == 1 for events in results)


def test_naming_a_tool_that_is_not_offered_is_an_invalid_request(tool_engine):
    with pytest.raises(InvalidRequestError, match="no tool named 'nope'"):
        asyncio.run(collect(tool_engine, request(ToolChoiceTool(name="nope"))))


@pytest.mark.parametrize("dialect", ["generic", "hermes", "qwen3_coder"])
def test_under_auto_a_call_is_constrained_once_the_model_opens_it(tmp_path, dialect):
    """The processor alone, fed a sequence that opens a call: from the marker on, only valid
    call text gets through; after the call closes, the model is free again. The marker is
    text over several tokens (generic), or one special token caught on the device (others)."""
    import mlx.core as mx
    from mlx_lm.utils import load

    from pensieve_inference.constrained import make_tool_constraint
    from pensieve_inference.dialects import DIALECTS
    from pensieve_inference.prompt import function_spec
    from pensieve_inference.tool_stream import ToolCallStream
    from pensieve_model_support.testing import QWEN3_CODER_TEMPLATE, TOOL_CHATML_TEMPLATE

    template = {"generic": None, "hermes": TOOL_CHATML_TEMPLATE, "qwen3_coder": QWEN3_CODER_TEMPLATE}[dialect]
    path = build_tiny_model(tmp_path / "m", chat_template=template, tool_tokens=template is not None)
    _, tokenizer = load(str(path))
    specs = [function_spec(t) for t in TOOLS]
    prompt = [1] * 7
    processor = make_tool_constraint(
        tokenizer, DIALECTS[dialect], specs, forced=False, single=False, prompt_tokens=len(prompt)
    )
    tokens = prompt + tokenizer.encode("Let me look.", add_special_tokens=False)
    mx.random.seed(3)
    vocab = len(tokenizer)
    free = mx.random.normal((1, vocab))

    def step(logits):
        # As the worker runs it: the newest token is on the device, the ones before it emitted.
        processor.seen[:] = tokens[len(prompt) : -1]
        return processor(mx.array(tokens), logits)

    assert mx.array_equal(step(free), free), "free text before the call"
    tokens += tokenizer.encode(" <tool_call>", add_special_tokens=False)
    while "</tool_call>" not in tokenizer.decode(tokens[len(prompt) :]):
        logits = step(mx.random.normal((1, vocab)) * 4)
        tokens.append(int(mx.argmax(logits, axis=-1).item()))
        assert len(tokens) < 300
    after = mx.random.normal((1, vocab))
    assert mx.array_equal(step(after), after), "free again after the call"
    stream = ToolCallStream(DIALECTS[dialect], specs)
    events = stream.feed(tokenizer.decode(tokens[len(prompt) :])) + stream.finish()
    ((name, arguments),) = calls_of(events)
    jsonschema.validate(arguments, SCHEMAS[name])


def test_a_call_stays_valid_when_company_arrives_midway(tool_engine, monkeypatch):
    """A lone sequence decodes outside the batch; others arriving send it back in with its
    cache, its last tokens replayed. The constraint follows it by position through both moves."""
    from pensieve_inference.batching import ModelBatch

    rejoined, emitted = [], []
    original, take = ModelBatch._rejoin, ModelBatch._take_token

    def spy(self, feed=1):
        rejoined.append(self._solo is not None)
        original(self, feed)

    def count(self, seq, token, finish):
        emitted.append(token)
        return take(self, seq, token, finish)

    monkeypatch.setattr(ModelBatch, "_rejoin", spy)
    monkeypatch.setattr(ModelBatch, "_take_token", count)

    async def scenario():
        async def lone():
            return [e async for e in tool_engine.generate(request(ToolChoiceTool(name="run"), text="Alone at first"))]

        alone = asyncio.ensure_future(lone())
        while len(emitted) < 6:  # a few tokens into its call
            await asyncio.sleep(0.005)
        company = await many(tool_engine, [request(ToolChoiceAny(), text=f"Later {i}") for i in range(4)])
        return [await alone, *company]

    results = asyncio.run(scenario())
    assert True in rejoined, "the lone call went back into the batch midway"
    check(results[:1], {"run"})
    check(results[1:], set(SCHEMAS))


def test_a_failing_processor_steps_aside_instead_of_failing_the_batch(engine, monkeypatch):
    """A bug in one request's grammar step must not fail the requests decoding beside it."""
    from pensieve_inference.constrained import ToolConstraint

    def broken(self, logits, tokens):
        raise RuntimeError("grammar step failed")

    monkeypatch.setattr(ToolConstraint, "mask", broken)
    plain = GenerationRequest(messages=[MessageParam(role="user", content="Hi")], max_tokens=12, temperature=0.0)
    results = asyncio.run(many(engine, [request(ToolChoiceAny(), max_tokens=12), plain, plain]))
    assert all(isinstance(events[-1], Finished) for events in results)
    assert [events[-1].output_tokens for events in results] == [12, 12, 12]
