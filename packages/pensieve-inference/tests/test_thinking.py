"""Thinking models: thinking split from the answer, a budget that holds, the API's rules."""

import asyncio

import pytest

from pensieve_claude_types import MessageParam, ThinkingAdaptive, ThinkingDisabled, ThinkingEnabled
from pensieve_core import Finished, GenerationRequest, TextDelta, ThinkingDelta, ThinkingEnd
from pensieve_inference.thinking import ThinkingPlan, ThinkingSplitter, thinking_plan
from pensieve_model_support.testing import THINK_CHATML_TEMPLATE, build_tiny_model


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    path = build_tiny_model(tmp_path_factory.mktemp("think"), chat_template=THINK_CHATML_TEMPLATE, think_tokens=True)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    assert engine.loaded.tokenizer.has_thinking
    yield engine
    engine._worker.stop()


def request(thinking, max_tokens=40, **kw):
    return GenerationRequest(
        messages=[MessageParam(role="user", content="Think first.")],
        max_tokens=max_tokens,
        thinking=thinking,
        temperature=1.0,
        **kw,
    )


async def collect(engine, req):
    return [e async for e in engine.generate(req)]


@pytest.mark.parametrize("budget", [1, 5, 12])
def test_thinking_comes_first_and_stays_within_its_budget(thinker, budget, monkeypatch):
    from pensieve_inference.batching import ModelBatch

    generated = []  # the output tokens as the worker emits them, to count thinking independently
    original = ModelBatch._take_token

    def spy(self, seq, token, finish):
        generated.append(token)
        return original(self, seq, token, finish)

    monkeypatch.setattr(ModelBatch, "_take_token", spy)
    events = asyncio.run(collect(thinker, request(ThinkingEnabled(budget_tokens=budget))))
    (end_token,) = thinker.loaded.tokenizer.think_end_tokens
    assert 1 <= generated.index(end_token) <= budget, "the template opened thinking; the end marker comes by the budget"
    kinds = [type(e).__name__ for e in events[1:-1]]
    end = kinds.index("ThinkingEnd")
    assert set(kinds[:end]) == {"ThinkingDelta"}, "only thinking before the block closes"
    assert set(kinds[end + 1 :]) <= {"TextDelta"} and "TextDelta" in kinds, "then the answer"
    finished = events[-1]
    assert isinstance(finished, Finished) and 1 <= finished.thinking_tokens <= budget
    assert finished.output_tokens > finished.thinking_tokens


def test_disabled_thinking_renders_a_closed_section_and_yields_no_thinking(thinker):
    assert thinker._renderer.text(request(ThinkingDisabled())).endswith("<think>\n\n</think>\n\n")
    events = asyncio.run(collect(thinker, request(ThinkingDisabled(), max_tokens=10)))
    assert not [e for e in events if isinstance(e, (ThinkingDelta, ThinkingEnd))]
    assert [e for e in events if isinstance(e, TextDelta)]


def test_without_a_budget_thinking_runs_until_the_model_or_max_tokens_ends_it(thinker):
    events = asyncio.run(collect(thinker, request(ThinkingAdaptive(), max_tokens=12)))
    assert isinstance(events[1], ThinkingDelta)
    assert isinstance(events[-2], ThinkingEnd), "cut off while thinking: the block still closes"
    assert events[-1].stop_reason == "max_tokens"


THOUGHT = "<think>\nLet me see: 2 < 3.\n</think>\n\nYes."


@pytest.mark.parametrize("cut", range(len(THOUGHT) + 1))
def test_splitting_holds_wherever_the_stream_is_cut(cut):
    splitter = ThinkingSplitter("<think>", "</think>", is_open=False)
    out = [splitter.feed(THOUGHT[:cut]), splitter.feed(THOUGHT[cut:]), splitter.finish()]
    thought = "".join(e.thinking for events, _ in out for e in events if isinstance(e, ThinkingDelta))
    assert thought == "Let me see: 2 < 3.\n"
    assert "".join(answer for _, answer in out) == "Yes."
    assert sum(isinstance(e, ThinkingEnd) for events, _ in out for e in events) == 1


def test_an_answer_without_thinking_passes_through():
    splitter = ThinkingSplitter("<think>", "</think>", is_open=False)
    assert splitter.feed("<") == ([], "")
    assert splitter.feed("b>bold</b>") == ([], "<b>bold</b>")


def test_low_effort_turns_adaptive_thinking_off_and_high_leaves_it_on(thinker):
    low, high = request(ThinkingAdaptive(), effort="low"), request(ThinkingAdaptive(), effort="high")
    assert thinker._renderer.text(low).endswith("<think>\n\n</think>\n\n"), "enable_thinking=False for the template"
    assert thinker._renderer.text(high).endswith("<think>\n")
    events = asyncio.run(collect(thinker, low))
    assert not [e for e in events if isinstance(e, (ThinkingDelta, ThinkingEnd))]
    events = asyncio.run(collect(thinker, request(ThinkingAdaptive(), max_tokens=12, effort="high")))
    assert isinstance(events[1], ThinkingDelta) and events[-1].thinking_tokens is None, "high: no budget"


@pytest.mark.parametrize(
    ("effort", "budget"), [(None, None), ("medium", 10), ("high", None), ("xhigh", None), ("max", None)]
)
def test_effort_sets_the_adaptive_thinking_budget(effort, budget):
    assert thinking_plan(request(ThinkingAdaptive(), max_tokens=40, effort=effort)) == ThinkingPlan(True, budget)


def test_medium_effort_closes_adaptive_thinking_at_its_budget(thinker):
    events = asyncio.run(collect(thinker, request(ThinkingAdaptive(), max_tokens=40, effort="medium")))
    finished = events[-1]
    assert isinstance(finished, Finished) and 1 <= finished.thinking_tokens <= 10, "a quarter of max_tokens"
    assert any(isinstance(e, ThinkingEnd) for e in events)


def test_effort_leaves_explicit_thinking_settings_alone():
    assert thinking_plan(request(ThinkingEnabled(budget_tokens=20), effort="low")) == ThinkingPlan(True, 20)
    assert thinking_plan(request(ThinkingDisabled(), effort="max")) == ThinkingPlan(False)


EFFORT_TEMPLATE = THINK_CHATML_TEMPLATE.replace(
    "{% for message", "{% if reasoning_effort is defined %}Reasoning: {{ reasoning_effort }}\n{% endif %}{% for message"
)


@pytest.mark.parametrize(
    ("effort", "shown"), [("low", "low"), ("medium", "medium"), ("xhigh", "high"), ("max", "high")]
)
def test_effort_reaches_a_template_that_reads_reasoning_effort(thinker, monkeypatch, effort, shown):
    from pensieve_inference.prompt import PromptRenderer

    assert not thinker._renderer.reads_effort, "a template without the switch is not given it"
    tokenizer = thinker.loaded.tokenizer
    monkeypatch.setattr(tokenizer._tokenizer, "chat_template", EFFORT_TEMPLATE)
    renderer = PromptRenderer(tokenizer, "m")
    assert renderer.text(request(ThinkingAdaptive(), effort=effort)).startswith(f"Reasoning: {shown}\n")
    assert "Reasoning:" not in renderer.text(request(ThinkingAdaptive())), "no effort asked: the template's default"
