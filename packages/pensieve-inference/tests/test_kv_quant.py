"""kv_bits: the cache really is mlx-lm's QuantizedKVCache, its size is what validate computes,
the engine's greedy answer is mlx-lm's own quantized generate_step's, and a model's requests
decode one after another (a waiting one can be cancelled; the prefix cache still serves)."""

import asyncio
import time

import mlx.core as mx
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import KVCache, QuantizedKVCache, make_prompt_cache

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta


@pytest.fixture(scope="module")
def kv_model_dir(tmp_path_factory):
    from pensieve_model_support.testing import build_tiny_model

    # Head dim 32 (hidden 128, 4 heads): a size mx.quantize groups by; the default tiny model's 16 is not.
    return build_tiny_model(tmp_path_factory.mktemp("kv"), hidden_size=128)


@pytest.fixture(scope="module")
def kv8_engine(kv_model_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    options = EngineOptions(kv_bits=8, prefix_cache_bytes=1 << 30)
    engine = MLXEngine.load_sync(resolve_reference(str(kv_model_dir)), HuggingFaceHub(), options)
    yield engine
    engine.worker.stop()


def request(text, max_tokens=12):
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=max_tokens, temperature=0.0)


async def timed(engine, req):
    """Each event with the time it arrived."""
    return [(time.perf_counter(), e) async for e in engine.generate(req)]


def text_of(events):
    return "".join(e.text for _, e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("bits", [None, 8, 4])
def test_the_cache_costs_what_validate_computes_per_token(kv_model_dir, bits):
    from pensieve_inference.kv_quant import KVQuantization, quantized
    from pensieve_model_support import HuggingFaceHub, kv_layout, load_model, resolve_reference

    loaded = load_model(resolve_reference(str(kv_model_dir)), HuggingFaceHub())
    layout = kv_layout(loaded.config, loaded.model)
    assert layout is not None and layout.head_dim == 32 and layout.group_size == 32
    cache = make_prompt_cache(loaded.model)
    if bits is not None:
        cache = quantized(cache, KVQuantization(bits=bits, group_size=layout.group_size))
    loaded.model(mx.arange(256)[None], cache=cache)  # one allocation step of 256 tokens, exactly full
    mx.eval([c.state for c in cache])
    assert all(type(c) is (KVCache if bits is None else QuantizedKVCache) for c in cache)
    assert sum(c.nbytes for c in cache) == 256 * layout.bytes_per_token(bits)


def _greedy(model, prompt, n, bits):
    """mlx-lm's generate_step over a cache quantized from its first token (None: full precision)."""
    cache = make_prompt_cache(model)
    if bits is not None:
        cache = [QuantizedKVCache(group_size=32, bits=bits) for _ in cache]
    return [int(t) for t, _ in generate_step(mx.array(prompt), model, max_tokens=n, prompt_cache=cache)]


@pytest.mark.parametrize("bits", [8, 4])
def test_the_engine_answers_as_generate_step_on_a_quantized_cache(kv_model_dir, bits):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(resolve_reference(str(kv_model_dir)), HuggingFaceHub(), EngineOptions(kv_bits=bits))
    try:
        req = request("Tell me about quantized caches.")
        answer = text_of(asyncio.run(timed(engine, req)))
        prompt, model = engine._renderer.prompt(req).tokens, engine.loaded.model
    finally:
        engine.worker.stop()
    quantized, full = _greedy(model, prompt, 12, bits), _greedy(model, prompt, 12, None)
    assert answer == engine.loaded.tokenizer.decode(quantized).lstrip()  # the answer's opening space is cut
    if bits == 4:  # on this random model 4 bits changes the answer: the engine's cache is quantized
        assert quantized != full
    else:  # and 8 bits keeps it, here for all twelve tokens (mlx-lm's own quantized_kv_start path did not)
        assert quantized == full


def test_two_concurrent_requests_decode_one_after_the_other_with_quantized_caches(kv8_engine):
    first, second = request("The first question, about lakes."), request("The second question, about hills.")
    alone = [text_of(asyncio.run(timed(kv8_engine, r))) for r in (first, second)]

    async def together():
        return await asyncio.gather(timed(kv8_engine, first), timed(kv8_engine, second))

    a, b = asyncio.run(together())
    assert [text_of(a), text_of(b)] == alone  # the same greedy answers: deterministic, batch or not
    started_second = next(t for t, e in b if isinstance(e, Started))
    assert started_second >= a[-1][0]  # its turn came when the first had finished
    # What the prefix cache keeps is quantized, and a warm turn reads it.
    prompt = kv8_engine._renderer.prompt(first).tokens
    cache, rest = kv8_engine.prefix_cache.take(kv8_engine.model.id, kv8_engine.loaded.model, prompt)
    assert len(rest) == 1 and all(isinstance(c, QuantizedKVCache) and c.bits == 8 for c in cache)
    again = asyncio.run(timed(kv8_engine, first))
    assert again[0][1].cache_read_tokens == len(prompt) - 1 and text_of(again) == alone[0]


def test_a_request_cancelled_while_waiting_never_starts_and_the_first_one_finishes(kv8_engine):
    async def scenario():
        running = asyncio.create_task(timed(kv8_engine, request("A long answer, please.", max_tokens=400)))
        while kv8_engine.active_generations < 1:
            await asyncio.sleep(0.001)
        waiting = kv8_engine.generate(request("Never mind."))
        first_event = asyncio.create_task(anext(waiting))
        while kv8_engine.active_generations < 2:
            await asyncio.sleep(0.001)
        first_event.cancel()  # the client goes away before its turn
        await asyncio.gather(first_event, return_exceptions=True)
        while kv8_engine.active_generations > 1:
            await asyncio.sleep(0.001)
        assert not running.done()  # dropped from the queue while the first still decodes
        return await running

    events = asyncio.run(scenario())
    assert isinstance(events[-1][1], Finished)
    assert kv8_engine.active_generations == 0
