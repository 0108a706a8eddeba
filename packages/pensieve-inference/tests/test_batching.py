"""Continuous batching on one worker: concurrent requests decode together, give the same
greedy text as alone, and keep their prefixes at message boundaries."""

import asyncio

import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta


@pytest.fixture(scope="module")
def batch_engine(tiny_model_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=1 << 30)
    )
    yield engine
    engine.worker.stop()


def request(text, *, system=None, max_tokens=24):
    return GenerationRequest(
        messages=[MessageParam(role="user", content=text)], system=system, max_tokens=max_tokens, temperature=0.0
    )


async def answer(engine, req, seen=None):
    events = [e async for e in engine.generate(req)]
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    if seen is not None:
        seen.append(engine.worker.active_generations)
    return events


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _collected_job(engine, text, max_tokens):
    """A greedy job whose events are collected in `out`, without an event loop."""
    from dataclasses import dataclass, field

    from pensieve_inference.jobs import GenerationJob

    @dataclass(kw_only=True)
    class Collected(GenerationJob):
        out: list = field(default_factory=list)

        def emit(self, event):
            self.out.append(event)

    return Collected(
        prompt=engine._renderer.prompt(request(text)).tokens,
        max_tokens=max_tokens,
        sampler_args={"temp": 0.0, "top_p": 0.0, "top_k": 0},
        stop_sequences=None,
        request_id=text,
        loop=None,
        events=None,
    )


def test_parallel_greedy_equals_one_by_one(batch_engine):
    reqs = [request(f"Parallel request number {i}: {'word ' * i}") for i in range(8)]
    alone = [text_of(asyncio.run(answer(batch_engine, r))) for r in reqs]

    peak = []

    async def together():
        async def watch():
            while True:
                peak.append(batch_engine.worker.active_generations)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            return await asyncio.gather(*(answer(batch_engine, r) for r in reqs))
        finally:
            watcher.cancel()

    batched = [text_of(events) for events in asyncio.run(together())]
    assert batched == alone
    assert all(alone) and len(set(alone)) > 1
    assert max(peak) > 1  # they really were in the batch together


def test_a_second_conversation_reads_the_shared_system_prompt_at_its_boundary(batch_engine):
    system = "You are the boundary test. " + "Keep the shared instructions in mind. " * 20
    first, second = request("First conversation", system=system, max_tokens=400), request("Another one", system=system)
    boundary = batch_engine._renderer.prompt(second).boundaries[0]

    async def overlapped():
        # The second arrives while the first still decodes: only the boundary copy can serve it.
        events = batch_engine.generate(first)
        started = await anext(events)
        await anext(events)
        other = await answer(batch_engine, second)
        await events.aclose()
        return started, other[0]

    started_first, started_second = asyncio.run(overlapped())
    assert started_first.cache_read_tokens < 10
    assert started_second.cache_read_tokens == boundary > 150


def test_an_abandoned_request_leaves_its_prefill_for_a_retry(batch_engine):
    req = request("A request abandoned after its first words " * 10, max_tokens=400)

    async def abandon():
        events = batch_engine.generate(req)
        started = await anext(events)
        await anext(events)
        await events.aclose()
        return started

    first = asyncio.run(abandon())
    retry = asyncio.run(answer(batch_engine, request(req.messages[0].content, max_tokens=2)))[0]
    assert first.cache_read_tokens < 10
    assert retry.cache_read_tokens == retry.prompt_tokens - 1


@pytest.mark.parametrize("solo_steps", [0, 1, 5])
def test_a_lone_sequence_rejoins_the_batch_when_company_arrives(batch_engine, solo_steps):
    """Decoding alone uses generate_step; a second request sends it back into the batch, at
    any point (even before its first solo step), and both texts match their solo runs."""
    from pensieve_inference.batching import ModelBatch

    def job(text):
        return _collected_job(batch_engine, text, 16)

    def drain(batch):
        while len(batch):
            batch.step()

    batch = ModelBatch(batch_engine.loaded)
    alone = []
    for text in ("The first of two", "The second of two"):
        j = job(text)
        batch.admit(j)
        drain(batch)
        alone.append(text_of(j.out))

    first, second = job("The first of two"), job("The second of two")
    batch.admit(first)
    while batch._solo is None:
        batch.step()
    for _ in range(solo_steps):
        batch.step()
    batch.admit(second)
    assert batch._solo is None  # back in the batch
    drain(batch)
    assert [text_of(first.out), text_of(second.out)] == alone
    assert all(isinstance(j.out[-1], Finished) and j.out[-1].output_tokens == 16 for j in (first, second))


def test_a_rejoining_sequence_and_its_company_start_decoding_in_the_same_step(batch_engine):
    """The lone sequence feeds as many tokens again as the newcomer's prefill (padded to that
    length anyway), so neither waits for the other's move into decoding."""
    from pensieve_inference.batching import REJOIN_FEED, ModelBatch

    def job(text, max_tokens=12):
        return _collected_job(batch_engine, text, max_tokens)

    batch = ModelBatch(batch_engine.loaded, rejoin_feed=REJOIN_FEED)  # a GPU's; a CPU's is 1
    first, second = job("The first of two"), job("A second, longer request arriving while the first decodes")
    batch.admit(first)
    while batch._solo is None:
        batch.step()
    batch.step()
    batch.admit(second)

    def produced():
        return {s.job.request_id: s.output_tokens for s in batch._running.values()}

    before = produced()
    while (after := produced()) == before:
        batch.step()
    assert after[first.request_id] > before[first.request_id]
    assert after[second.request_id] > before.get(second.request_id, 0)  # in the same step
