"""Templating and tokenizing run on the engine's own few threads, bounded in time: a template
that never ends is stopped with a 400, its thread serves again, and a busy count_tokens does
not hold up generation."""

import asyncio
import time

import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest
from pensieve_core.errors import InvalidRequestError

# ChatML, except that a message saying "loop forever" makes the template loop ~10^10 times.
LOOPING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if 'loop forever' in message['content'] %}"
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def looping_engine(tmp_path_factory):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("looping"), chat_template=LOOPING_TEMPLATE)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    engine._render_pool.timeout_s = engine._count_pool.timeout_s = 1.0
    yield engine
    engine.worker.stop()


def request(text, max_tokens=3):
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=max_tokens, temperature=0.0)


async def answer(engine, req):
    async def events():
        return [e async for e in engine.generate(req)]

    return await asyncio.wait_for(events(), 10)  # never a hung test, whatever the engine does


def test_a_template_that_never_ends_is_stopped_and_its_thread_serves_again(looping_engine):
    start = time.monotonic()
    with pytest.raises(InvalidRequestError, match="rendering the prompt took longer than 1 s"):
        asyncio.run(answer(looping_engine, request("please loop forever")))
    assert time.monotonic() - start < 5
    with pytest.raises(InvalidRequestError, match="counting the prompt's tokens took longer"):
        asyncio.run(asyncio.wait_for(looping_engine.count_tokens(request("loop forever, counted")), 10))
    # Both pools' threads were stopped, not lost: every one of them serves again.
    for i in range(4):
        assert isinstance(asyncio.run(answer(looping_engine, request(f"ordinary {i}")))[-1], Finished)
        assert asyncio.run(looping_engine.count_tokens(request(f"ordinary {i}"))) > 0


def test_a_busy_count_tokens_does_not_hold_up_generation(looping_engine):
    async def both():
        counting = asyncio.ensure_future(looping_engine.count_tokens(request("loop forever while counting")))
        await asyncio.sleep(0.1)  # the count pool's one thread is busy with it now
        events = await answer(looping_engine, request("generated meanwhile"))
        assert not counting.done()  # generation did not wait for the count
        with pytest.raises(InvalidRequestError):
            await counting
        return events

    assert isinstance(asyncio.run(both())[-1], Finished)
