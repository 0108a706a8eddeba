import asyncio

import pytest

from pensieve_claude_types import CacheControl, MessageParam, TextBlockParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta


@pytest.fixture(scope="module")
def cached_engine(tiny_model_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=1 << 30)
    )
    yield engine
    engine.worker.stop()


def run(engine, messages, max_tokens=6, **kw):
    request = GenerationRequest(
        messages=[MessageParam(role=r, content=c) for r, c in messages], max_tokens=max_tokens, temperature=0.0, **kw
    )
    return run_request(engine, request)


def run_request(engine, request):
    async def collect():
        return [e async for e in engine.generate(request)]

    events = asyncio.run(collect())
    started = events[0]
    assert isinstance(started, Started) and isinstance(events[-1], Finished)
    return started, "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def marked(text):
    return [TextBlockParam(text=text, cache_control=CacheControl())]


def test_without_cache_control_nothing_is_created_and_a_repeat_reads(cached_engine):
    # The API writes its cache only at cache_control breakpoints: without one, all is input.
    first, text1, _ = run(cached_engine, [("user", "The prefix cache test, first words")])
    assert first.cache_read_tokens == 0 and first.cache_creation_tokens == 0
    again, text2, _ = run(cached_engine, [("user", "The prefix cache test, first words")])
    # All but the last prompt token come from the cache; that one runs to give the next logits.
    assert again.cache_read_tokens == again.prompt_tokens - 1 and again.cache_creation_tokens == 0
    assert text2 == text1


def test_a_system_breakpoint_creates_up_to_the_end_of_the_system_prompt(cached_engine):
    request = GenerationRequest(
        messages=[MessageParam(role="user", content="After a cached system prompt")],
        max_tokens=6,
        temperature=0.0,
        system=marked("You are the system-breakpoint test. " * 5),
    )
    system_end = cached_engine._renderer.prompt(request).system_end
    cold, _, _ = run_request(cached_engine, request)
    assert cold.cache_creation_tokens == system_end - cold.cache_read_tokens > 20
    assert cold.prompt_tokens - cold.cache_read_tokens - cold.cache_creation_tokens > 0  # the user turn: input
    warm, _, _ = run_request(cached_engine, request)
    assert warm.cache_read_tokens > system_end and warm.cache_creation_tokens == 0


def test_automatic_caching_creates_all_but_the_generation_prompt(cached_engine):
    conversation = [("user", "Automatic caching, one turn only")]
    started, _, _ = run(cached_engine, conversation, cache_control=CacheControl())
    created_or_read = started.cache_creation_tokens + started.cache_read_tokens
    # The breakpoint is the last block: only the template's assistant header after it is input.
    assert started.cache_creation_tokens > 0 and 0 < started.prompt_tokens - created_or_read < 8


def test_a_breakpoint_mid_conversation_ends_creation_at_the_end_of_its_message(cached_engine):
    request = GenerationRequest(
        messages=[
            MessageParam(role="user", content=marked("Mid-conversation breakpoint, " * 8)),
            MessageParam(role="assistant", content="An answer that is not cached."),
            MessageParam(role="user", content="And the last question, not cached either."),
        ],
        max_tokens=6,
        temperature=0.0,
    )
    rendered = cached_engine._renderer.prompt(request)
    started, _, _ = run_request(cached_engine, request)
    assert 0 < rendered.cache_end < rendered.boundaries[-1]
    assert started.cache_creation_tokens == rendered.cache_end - started.cache_read_tokens > 20


def test_a_longer_conversation_reuses_the_earlier_turn_and_its_answer(cached_engine):
    start, reply, _done = run(cached_engine, [("user", "Tell me something about caches")])
    follow, _, _ = run(
        cached_engine, [("user", "Tell me something about caches"), ("assistant", reply), ("user", "And more?")]
    )
    assert follow.cache_read_tokens >= start.prompt_tokens
    assert follow.cache_creation_tokens == 0 and follow.cache_read_tokens < follow.prompt_tokens


def test_off_by_default(engine):
    started, _, _ = run(engine, [("user", "no cache here")])
    assert (started.cache_read_tokens, started.cache_creation_tokens) == (0, 0)


def test_reuse_runs_on_through_an_answer_whose_text_encodes_otherwise(tiny_model_dir, tmp_path):
    """Token-exact replay: the answer is spelled a character a token (as a model may sample it),
    which its text does not encode to; the next turn still reads it from the cache."""
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
    from pensieve_model_support.testing import build_tiny_model

    tokenizer = load_model(resolve_reference(str(tiny_model_dir)), HuggingFaceHub()).tokenizer
    answer = "Quick brown"  # no character twice: a bigram model can spell it
    spelled = [tokenizer.encode(ch, add_special_tokens=False)[0] for ch in answer]
    assert tokenizer.decode(spelled) == answer and spelled != tokenizer.encode(answer, add_special_tokens=False)
    model = build_tiny_model(tmp_path / "speller", reply_ids=spelled)
    engine = MLXEngine.load_sync(
        resolve_reference(str(model)), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=1 << 28)
    )
    try:
        first = [("user", "Spell two words for me.")]
        started, text, finished = run(engine, first, max_tokens=40)
        assert (text, finished.stop_reason) == (answer, "end_turn")
        again, _, _ = run(engine, [*first, ("assistant", answer), ("user", "Once more.")], max_tokens=40)
        # The first prompt, the answer's own tokens and its end-of-turn token are all reused.
        assert again.cache_read_tokens >= started.prompt_tokens + len(spelled) + 1
    finally:
        engine.worker.stop()


def test_a_warm_turn_prefills_its_short_tail_in_one_pass_and_a_retry_still_reads_the_turn(cached_engine, monkeypatch):
    """Claude Code's turn, as tools/bench/warm_turn.py replays it: the answer and a new message go
    in before the environment message, which stays last. The few tokens before the boundary at
    the last message run with the rest (no forward pass and cache copy of their own); a retry of
    the last message still reads the cache up to that boundary (the turn's cache, trimmed)."""
    env = ("user", "The environment message, which stays last in every turn.")
    first = [("user", "One pass for a short tail: the first question."), env]
    _, answer, _ = run(cached_engine, first)
    second = [first[0], ("assistant", answer or "(no text)"), ("user", "The next question, a short one."), env]
    boundary = cached_engine._renderer.prompt(
        GenerationRequest(messages=[MessageParam(role=r, content=c) for r, c in second], max_tokens=6)
    ).boundaries[-1]
    model = type(cached_engine.loaded.model)
    passes, original = [], model.__call__

    def counted(self, inputs, cache=None, **kwargs):
        passes.append((cache[0].offset, inputs.shape[1]))  # where each forward pass starts, its length
        return original(self, inputs, cache=cache, **kwargs)

    monkeypatch.setattr(model, "__call__", counted)
    warm, _, _ = run(cached_engine, second)
    monkeypatch.undo()
    new = warm.prompt_tokens - warm.cache_read_tokens
    assert warm.cache_read_tokens < boundary < warm.prompt_tokens and new > 2
    # One pass over all but the last prompt token (which samples the first), no cut before it.
    assert [p for p in passes if p[0] < warm.prompt_tokens - 1] == [(warm.cache_read_tokens, new - 1)]
    retry, _, _ = run(cached_engine, [*second[:-1], ("user", "A different last message, as a retry sends.")])
    assert boundary <= retry.cache_read_tokens < retry.prompt_tokens


def test_a_prefill_is_cut_at_the_system_prompt_and_at_boundaries_far_enough_apart():
    from pensieve_inference.jobs import CUT_MIN_TOKENS, GenerationJob

    far = CUT_MIN_TOKENS
    job = GenerationJob(
        prompt=[], max_tokens=1, sampler_args={}, stop_sequences=None, request_id="", loop=None, events=None
    )
    job.boundaries, job.system_end, end = (40, 40 + far, 50 + far), 40, 10 * far
    assert job.cuts(0, end) == [40, 40 + far]  # the system prompt's end, however short
    assert job.cuts(45, end) == [50 + far]  # counted from the last point kept
    assert job.cuts(60, end) == []
    assert job.cuts(0, 45 + far) == [40, 40 + far]


def test_a_prefix_of_a_few_template_tokens_is_prefilled_again_not_copied(cached_engine, monkeypatch):
    from pensieve_inference import prefix_cache

    def tokens(text):
        request = GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=6)
        return cached_engine._renderer.prompt(request).tokens

    def shared(a, b):  # only the template's opening, as between any two new conversations
        return next(i for i, (x, y) in enumerate(zip(tokens(a), tokens(b), strict=False)) if x != y)

    pairs = [("Lakes are cold in the north.", "Hills rise over the plain."), ("Rivers run.", "Clouds drift.")]
    assert all(0 < shared(a, b) < prefix_cache.MIN_REUSE_TOKENS for a, b in pairs)
    run(cached_engine, [("user", pairs[0][0])])
    started, _, _ = run(cached_engine, [("user", pairs[0][1])])
    assert started.cache_read_tokens == 0
    # Without the floor a new pair reads the shared opening: what the floor changes.
    monkeypatch.setattr(prefix_cache, "MIN_REUSE_TOKENS", 0)
    run(cached_engine, [("user", pairs[1][0])])
    started, _, _ = run(cached_engine, [("user", pairs[1][1])])
    assert started.cache_read_tokens == shared(*pairs[1])
