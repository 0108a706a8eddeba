"""A failure inside a batch step fails only what it must: the other sequences in the batch
finish with the text they give alone, the generator is fresh afterwards, and a model whose
steps keep failing says so."""

import asyncio

import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Failed, Finished, GenerationRequest, Started, TextDelta


@pytest.fixture(scope="module")
def fault_engine(tiny_model_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=1 << 30)
    )
    yield engine
    engine.worker.stop()


def request(text, *, max_tokens=24, **sampling):
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=max_tokens, **sampling)


async def events_of(engine, req):
    return [e async for e in engine.generate(req)]


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


INNOCENT = "An innocent request decoding beside a broken one"


@pytest.mark.parametrize("top_k", [49152, 10**6, 2**63 - 1])
def test_top_k_past_the_vocabulary_keeps_every_token(fault_engine, top_k):
    """mlx-lm raises for top_k >= vocabulary size inside the batch step; it means no top-k."""

    async def both():
        return await asyncio.gather(
            events_of(fault_engine, request(INNOCENT)),
            events_of(fault_engine, request("Sampled with a huge top_k", temperature=1.0, top_k=top_k)),
        )

    alone = text_of(asyncio.run(events_of(fault_engine, request(INNOCENT))))
    innocent, sampled = asyncio.run(both())
    assert isinstance(sampled[-1], Finished) and sampled[-1].output_tokens == 24
    assert isinstance(innocent[-1], Finished) and text_of(innocent) == alone


def test_a_sampler_that_raises_fails_its_own_sequence_only(fault_engine, monkeypatch):
    import pensieve_inference.sampling as sampling
    from pensieve_inference.sampling import GuardedSampler

    made = sampling.make_request_sampler

    def raising(logprobs):
        raise ValueError("sampler exploded while building the step")

    def make(args, **kw):  # top_k 7 marks the request whose sampler breaks
        return GuardedSampler(raising) if args["top_k"] == 7 else made(args, **kw)

    monkeypatch.setattr(sampling, "make_request_sampler", make)
    alone = text_of(asyncio.run(events_of(fault_engine, request(INNOCENT, max_tokens=40))))

    async def both():
        innocent = asyncio.ensure_future(events_of(fault_engine, request(INNOCENT, max_tokens=40)))
        await asyncio.sleep(0.05)  # the innocent one is decoding when the broken one joins
        broken = await events_of(fault_engine, request("Broken sampler", temperature=1.0, top_k=7))
        return await innocent, broken

    innocent, broken = asyncio.run(both())
    assert isinstance(broken[-1], Failed) and broken[-1].error_type == "invalid_request_error"
    assert "sampler exploded" in broken[-1].message
    assert isinstance(innocent[-1], Finished) and text_of(innocent) == alone
    for i in range(5):
        assert isinstance(asyncio.run(events_of(fault_engine, request(f"next {i}", max_tokens=4)))[-1], Finished)
    assert fault_engine.degraded is None
    # The broken sampler is not handed out again: the same values get a fresh one (which the
    # patch makes raise again, so this request fails on its own, as the first did).
    again = asyncio.run(events_of(fault_engine, request("Broken again", temperature=1.0, top_k=7)))
    assert isinstance(again[-1], Failed) and "sampler exploded" in again[-1].message


def test_requests_with_the_same_sampling_values_are_sampled_in_one_call(fault_engine, monkeypatch):
    """mlx-lm samples a batch's rows in one call only when they hold one sampler object; two
    requests at temperature 0.9 share theirs, so some step samples both rows at once."""
    import pensieve_inference.sampling as sampling

    made, widths = sampling.make_request_sampler, []

    def make(args, **kw):
        inner = made(args, **kw)

        def counting(logprobs):
            widths.append(logprobs.shape[0])
            return inner(logprobs)

        return counting

    monkeypatch.setattr(sampling, "make_request_sampler", make)

    async def both():
        return await asyncio.gather(
            *(events_of(fault_engine, request(f"Shared sampler {i}", temperature=0.9, max_tokens=40)) for i in range(2))
        )

    results = asyncio.run(both())
    assert all(isinstance(r[-1], Finished) for r in results)
    assert 2 in widths, f"no step sampled both rows together: widths {sorted(set(widths))}"


def test_shared_samplers_hand_out_one_per_values_and_replace_a_failed_one():
    from pensieve_inference.sampling import GuardedSampler, SharedSamplers

    samplers = SharedSamplers()
    warm = samplers.get({"temp": 1.0, "top_p": 0.9, "top_k": 0})
    assert samplers.get({"top_k": 0, "top_p": 0.9, "temp": 1.0}) is warm
    assert samplers.get({"temp": 0.7, "top_p": 0.9, "top_k": 0}) is not warm
    assert isinstance(warm, GuardedSampler)
    warm.error = ValueError("broke")
    assert samplers.get({"temp": 1.0, "top_p": 0.9, "top_k": 0}) is not warm


def test_a_step_that_fails_once_loses_nobody(fault_engine, monkeypatch):
    """The generator raises mid-batch (a half-done step): both sequences start over in a fresh
    generator from what they have said, and end with the text they give alone."""
    from mlx_lm.generate import BatchGenerator

    texts = [f"Batch member {i} with some words" for i in range(2)]
    alone = [text_of(asyncio.run(events_of(fault_engine, request(t)))) for t in texts]
    original, calls = BatchGenerator.next, []

    def flaky(self):
        if len(self._generation_batch) == 2 and not calls:
            calls.append(self)
            raise RuntimeError("transient failure mid-step")
        return original(self)

    monkeypatch.setattr(BatchGenerator, "next", flaky)

    async def both():
        return await asyncio.gather(*(events_of(fault_engine, request(t)) for t in texts))

    results = asyncio.run(both())
    assert calls, "the failure was never injected: the two requests did not share a batch step"
    assert [text_of(r) for r in results] == alone
    assert all(isinstance(r[-1], Finished) and r[-1].output_tokens == 24 for r in results)
    assert fault_engine.worker._batches[id(fault_engine.loaded.model)]._generator is not calls[0]


def test_a_model_that_keeps_failing_is_degraded(tiny_model_dir, monkeypatch):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(resolve_reference(str(tiny_model_dir)), HuggingFaceHub())
    try:

        def broken(self, *args, **kwargs):
            raise RuntimeError("the device fell over")

        # The model itself fails, whichever path (alone or batched) runs it.
        monkeypatch.setattr(type(engine.loaded.model), "__call__", broken)
        for _ in range(2):
            events = asyncio.run(events_of(engine, request("fail please")))
            assert isinstance(events[0], Started) and isinstance(events[-1], Failed)
        assert engine.degraded is not None and "the device fell over" in engine.degraded
        monkeypatch.undo()
        assert isinstance(asyncio.run(events_of(engine, request("served again", max_tokens=3)))[-1], Finished)
        assert engine.degraded is None
    finally:
        engine.worker.stop()
