"""Long prompts prefill in the lane, a chunk per step: a short request that arrives meanwhile
is served before the next chunk, and a prompt gives the same text through the lane as through
mlx-lm's batch prefill, keeping its message boundaries and its abandoned prefill."""

import asyncio
from dataclasses import dataclass, field

import msgspec
import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, PrefillProgress, Started, TextDelta


@pytest.fixture(scope="module")
def lane_engine(tiny_model_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=1 << 30)
    )
    yield engine
    engine.worker.stop()


@pytest.fixture
def small_lane(monkeypatch):
    """Prompts past 64 tokens go through the lane, in chunks of 96 (32 when shared)."""
    import pensieve_inference.batching as batching
    import pensieve_inference.prefill_lane as lane

    monkeypatch.setattr(batching, "LANE_MIN_TOKENS", 64)
    monkeypatch.setattr(lane, "SHARED_CHUNK", 32)
    return 96


def request(text, *, system=None, max_tokens=16):
    return GenerationRequest(
        messages=[MessageParam(role="user", content=text)], system=system, max_tokens=max_tokens, temperature=0.0
    )


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


LONG = "A long prompt that fills the lane for several chunks. " * 40


def collected_job(engine, text, *, watch=None, **kw):
    """A job that keeps its events; with `watch`, what watch() said when the first text went out."""
    from pensieve_inference.jobs import GenerationJob

    @dataclass(kw_only=True)
    class Collected(GenerationJob):
        out: list = field(default_factory=list)
        at_first_text: object = None

        def emit(self, event):  # the events themselves, on the worker's side
            if watch is not None and isinstance(event, TextDelta) and self.at_first_text is None:
                self.at_first_text = watch()
            self.out.append(event)

    tokens = engine._renderer.prompt(request(text)).tokens
    return Collected(
        prompt=tokens,
        max_tokens=kw.get("max_tokens", 4),
        sampler_args={"temp": 0.0, "top_p": 0.0, "top_k": 0},
        stop_sequences=None,
        request_id=text[:10],
        loop=None,
        events=None,
    )


class CountingModel:
    """The real model, counting the prompt tokens it is given in calls of more than 64."""

    def __init__(self, model):
        self._model = model
        self.long_tokens = 0

    def __call__(self, inputs, *args, **kwargs):
        if inputs.shape[-1] > 64:
            self.long_tokens += inputs.shape[-1]
        return self._model(inputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.mark.parametrize("lane_on", [True, False])
def test_a_short_request_gets_its_first_token_before_the_next_long_chunk(lane_engine, monkeypatch, lane_on):
    """No chunk of the long prompt runs between the short request's admission and its first
    token. mlx-lm's batch prefill (lane off) runs the short prompt together with the long one's
    chunks, and two more of them come first: that path is the one this test keeps us off."""
    import pensieve_inference.batching as batching

    monkeypatch.setattr(batching, "LANE_MIN_TOKENS", 64 if lane_on else 1 << 30)
    model = CountingModel(lane_engine.loaded.model)
    batch = batching.ModelBatch(msgspec.structs.replace(lane_engine.loaded, model=model), prefill_step=128)
    long_job = collected_job(lane_engine, LONG * 2)
    assert len(long_job.prompt) > 5 * 128
    batch.admit(long_job)
    batch.step()
    batch.step()
    short_job = collected_job(lane_engine, "Hi", watch=lambda: model.long_tokens)
    batch.admit(short_job)
    before = model.long_tokens
    while short_job.at_first_text is None:
        batch.step()
    between = short_job.at_first_text - before
    while len(batch):
        batch.step()
    assert isinstance(long_job.out[-1], Finished) and isinstance(short_job.out[-1], Finished)
    if lane_on:
        assert between == 0
    else:
        assert between >= 2 * 128  # the behaviour the lane replaced


def test_the_lane_gives_the_text_the_batch_prefill_gives(lane_engine, monkeypatch, small_lane):
    import pensieve_inference.batching as batching

    lane = [text_of(asyncio.run(collect(lane_engine, request(LONG + f" {i}")))) for i in range(2)]
    monkeypatch.setattr(batching, "LANE_MIN_TOKENS", 1 << 30)
    batch = [text_of(asyncio.run(collect(lane_engine, request(LONG + f" {i}")))) for i in range(2)]
    assert lane == batch and all(lane)


async def collect(engine, req):
    return [e async for e in engine.generate(req)]


def test_a_system_prompt_in_the_lane_is_kept_at_its_boundary(lane_engine, small_lane):
    system = "You are the lane's boundary test. " + "Shared instructions for every conversation. " * 30
    first = request("First conversation", system=system, max_tokens=400)
    second = request("Another conversation", system=system)
    boundary = lane_engine._renderer.prompt(second).boundaries[0]
    assert boundary > 150

    async def overlapped():
        # The second arrives while the first still decodes: only the boundary copy can serve it.
        events = lane_engine.generate(first)
        await anext(events)
        await anext(events)
        other = await collect(lane_engine, second)
        await events.aclose()
        return other[0]

    assert asyncio.run(overlapped()).cache_read_tokens == boundary


def test_an_abandoned_lane_prefill_is_kept_for_a_retry(lane_engine, small_lane):
    req = request("Abandoned while its prompt was still in the lane. " * 30, max_tokens=2)

    async def abandon():
        events = lane_engine.generate(req)
        await anext(events)  # Started: in the lane
        await asyncio.sleep(0.05)
        await events.aclose()

    asyncio.run(abandon())
    retry = asyncio.run(collect(lane_engine, req))
    assert retry[0].cache_read_tokens > 0 and isinstance(retry[-1], Finished)


def test_a_long_prefill_says_how_far_it_is(lane_engine, monkeypatch, small_lane):
    import structlog

    import pensieve_inference.batching as batching
    import pensieve_inference.prefill_lane as lane

    monkeypatch.setattr(lane, "PROGRESS_EVERY_S", 0.0)  # every chunk, for the test
    batch = batching.ModelBatch(lane_engine.loaded, prefill_step=small_lane)
    job = collected_job(lane_engine, LONG + " progress", max_tokens=2)
    with structlog.testing.capture_logs() as logs:
        batch.admit(job)
        while len(batch):
            batch.step()
    assert isinstance(job.out[-1], Finished)
    progress = [e for e in logs if e["event"] == "prefill_progress"]
    assert len(progress) >= 3 and progress[-1]["done"] == progress[-1]["total"] - 1
    assert [e["done"] for e in progress] == sorted(e["done"] for e in progress)
    assert all(0 < e["percent"] <= 100 for e in progress)


def test_a_long_prefill_sends_its_progress_through_the_engine(tiny_model_dir, small_lane):
    """After each chunk, before any output: how many of the prompt's tokens are in, up to all but
    the last (the batch samples from that one)."""
    from pensieve_inference import GenerationWorker, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    worker = GenerationWorker(prefill_step=small_lane)
    try:
        engine = MLXEngine.load_sync(resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), worker=worker)
        events = asyncio.run(collect(engine, request(LONG + " progress", max_tokens=2)))
    finally:
        worker.stop()
    started, progress = events[0], [e for e in events if isinstance(e, PrefillProgress)]
    assert isinstance(started, Started) and isinstance(events[-1], Finished)
    assert events[1 : 1 + len(progress)] == progress, "progress comes between Started and the output"
    assert len(progress) >= 3 and {p.total for p in progress} == {started.prompt_tokens}
    done = [p.done for p in progress]
    assert done == sorted(set(done)) and done[0] <= small_lane and done[-1] == started.prompt_tokens - 1
