import asyncio
import os

import msgspec
import pytest

from pensieve_claude_types import MessageParam, Tool
from pensieve_core import Failed, Finished, GenerationRequest, Phases, Started, TextDelta
from pensieve_core.errors import PromptTooLongError


def req(text="Hello there", **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0.0)
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], **kw)


async def collect(engine, request):
    return [e async for e in engine.generate(request)]


def test_events_arrive_in_order_with_usage(engine):
    events = asyncio.run(collect(engine, req()))
    assert isinstance(events[0], Started) and events[0].prompt_tokens > 0
    assert all(isinstance(e, TextDelta) for e in events[1:-1])
    assert isinstance(events[-1], Finished)
    assert events[-1].stop_reason == "max_tokens" and events[-1].output_tokens == 8
    assert "".join(e.text for e in events[1:-1])


def untimed(events):
    """The events without their phase times, which differ run to run."""
    return [msgspec.structs.replace(e, phases=Phases()) if isinstance(e, Started) else e for e in events]


def test_greedy_generation_is_repeatable(engine):
    a = asyncio.run(collect(engine, req()))
    b = asyncio.run(collect(engine, req()))
    assert untimed(a) == untimed(b)


def test_started_carries_the_time_of_each_phase_before_prefill(engine):
    tool = Tool(name="lookup", description="Look a word up.", input_schema={"type": "object", "properties": {}})
    started = asyncio.run(collect(engine, req("time me", tools=[tool])))[0]
    assert isinstance(started, Started)
    phases = started.phases
    assert phases.render > 0 and phases.tokenize > 0 and phases.grammar > 0 and phases.queue > 0
    assert phases.cache > 0 if engine.prefix_cache is not None else phases.cache == 0


def test_prompt_tokens_equal_count_tokens(engine):
    r = req("count me please")
    events = asyncio.run(collect(engine, r))
    assert events[0].prompt_tokens == asyncio.run(engine.count_tokens(r))


@pytest.fixture(scope="module")
def small_context_engine(tmp_path_factory):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("ctx64"), context_length=64)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    yield engine
    engine._worker.stop()


def test_max_tokens_is_clamped_to_what_the_context_leaves(small_context_engine):
    events = asyncio.run(collect(small_context_engine, req(max_tokens=10_000_000)))
    assert events[-1].stop_reason == "model_context_window_exceeded"
    assert events[0].prompt_tokens + events[-1].output_tokens == 64


def test_prompt_longer_than_context_is_rejected_before_generation(engine):
    long_text = "word " * 5000
    with pytest.raises(PromptTooLongError, match=r"prompt is too long: \d+ tokens > 4096 maximum"):
        asyncio.run(collect(engine, req(long_text)))


def test_stop_sequence_ends_generation(engine):
    free = "".join(e.text for e in asyncio.run(collect(engine, req(max_tokens=12))) if isinstance(e, TextDelta))
    stop = free[3:6]
    events = asyncio.run(collect(engine, req(max_tokens=12, stop_sequences=[stop])))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert events[-1].stop_reason == "stop_sequence" and events[-1].stop_sequence == stop
    assert text == free[: free.index(stop)]


def test_sampling_with_temperature_top_p_top_k(engine):
    events = asyncio.run(collect(engine, req(temperature=1.0, top_p=0.9, top_k=20)))
    assert isinstance(events[-1], Finished)


def test_closing_the_stream_early_frees_the_worker(engine):
    async def first_delta_then_leave():
        gen = engine.generate(req(max_tokens=2000))
        async for event in gen:
            if isinstance(event, TextDelta):
                break
        await gen.aclose()
        # The worker must be free again: the next request finishes promptly.
        return await asyncio.wait_for(collect(engine, req(max_tokens=3)), timeout=20)

    events = asyncio.run(first_delta_then_leave())
    assert isinstance(events[-1], Finished) and events[-1].output_tokens == 3


def test_failures_inside_generation_become_failed_events(engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    with monkeypatch.context() as patch:  # a fault injected into the model's forward pass, then healed
        patch.setattr(type(engine.loaded.model), "__call__", broken)
        events = asyncio.run(collect(engine, req()))
    assert isinstance(events[-1], Failed) and "kernel exploded" in events[-1].message
    assert msgspec.structs.asdict(events[-1])["error_type"] == "api_error"
    # The batch is usable again for the next request.
    assert isinstance(asyncio.run(collect(engine, req()))[-1], Finished)


def test_server_cap_limits_output_and_reports_max_tokens(engine):
    engine.max_output_tokens = 3
    try:
        events = asyncio.run(collect(engine, req(max_tokens=50)))
    finally:
        engine.max_output_tokens = None
    assert (events[-1].stop_reason, events[-1].output_tokens) == ("max_tokens", 3)


def test_the_kernels_folder_comes_from_the_home_and_is_left_alone_off_cuda(tiny_model_dir, tmp_path, monkeypatch):
    from pensieve_core import Settings
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_metal.kernels import COMPILED_KERNELS
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    monkeypatch.delenv(COMPILED_KERNELS, raising=False)
    options = EngineOptions.of(Settings(home=str(tmp_path)))
    assert options.kernels_dir == tmp_path / "kernels"
    engine = MLXEngine.load_sync(resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), options)
    engine.worker.stop()
    # This machine's MLX compiles no CUDA kernels: nothing is set or made.
    assert COMPILED_KERNELS not in os.environ
    assert not (tmp_path / "kernels").exists()
