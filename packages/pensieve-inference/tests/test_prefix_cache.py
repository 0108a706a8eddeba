import asyncio

import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta


@pytest.fixture(scope="module")
def cached_engine(tiny_model_dir):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), prefix_cache_bytes=1 << 30
    )
    yield engine
    engine.worker.stop()


def run(engine, messages, max_tokens=6):
    request = GenerationRequest(
        messages=[MessageParam(role=r, content=c) for r, c in messages], max_tokens=max_tokens, temperature=0.0
    )

    async def collect():
        return [e async for e in engine.generate(request)]

    events = asyncio.run(collect())
    started = events[0]
    assert isinstance(started, Started) and isinstance(events[-1], Finished)
    return started, "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_first_request_creates_then_a_repeat_reads(cached_engine):
    first, text1, _ = run(cached_engine, [("user", "The prefix cache test, first words")])
    assert first.cache_read_tokens == 0 and first.cache_creation_tokens == first.prompt_tokens
    again, text2, _ = run(cached_engine, [("user", "The prefix cache test, first words")])
    # All but the last prompt token come from the cache; that one runs to give the next logits.
    assert again.cache_read_tokens == again.prompt_tokens - 1 and again.cache_creation_tokens == 1
    assert text2 == text1


def test_a_longer_conversation_reuses_the_earlier_turn_and_its_answer(cached_engine):
    start, reply, done = run(cached_engine, [("user", "Tell me something about caches")])
    follow, _, _ = run(cached_engine, [
        ("user", "Tell me something about caches"), ("assistant", reply), ("user", "And more?")])
    assert follow.cache_read_tokens >= start.prompt_tokens
    assert follow.cache_read_tokens + follow.cache_creation_tokens == follow.prompt_tokens


def test_off_by_default(engine):
    started, _, _ = run(engine, [("user", "no cache here")])
    assert (started.cache_read_tokens, started.cache_creation_tokens) == (0, 0)
