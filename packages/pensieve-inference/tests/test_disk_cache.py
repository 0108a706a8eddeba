"""System prompts' caches persist on disk and come back after a restart (a new engine on
the same weights); the files are listed and cleared without MLX."""

import asyncio

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta
from pensieve_inference.disk_cache import clear, list_entries

SYSTEM = "You are the persistence test. " + "Remember the house rules. " * 30


def load(model_dir, cache_dir):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    return MLXEngine.load_sync(
        resolve_reference(str(model_dir)), HuggingFaceHub(),
        prefix_cache_bytes=1 << 30, prefix_cache_dir=cache_dir, prefix_cache_disk_bytes=1 << 30,
    )


def ask(engine, text, system=SYSTEM):
    req = GenerationRequest(messages=[MessageParam(role="user", content=text)], system=system,
                            max_tokens=8, temperature=0.0)

    async def collect():
        return [e async for e in engine.generate(req)]

    events = asyncio.run(collect())
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    return events[0], "".join(e.text for e in events if isinstance(e, TextDelta))


def wait_written(engine):
    engine.prefix_cache.disk.wait()


def test_a_restart_restores_the_persisted_system_prompt(tiny_model_dir, tmp_path):
    cache_dir = tmp_path / "prefix-cache"
    first = load(tiny_model_dir, cache_dir)
    try:
        cold, cold_text = ask(first, "Before the restart")
        wait_written(first)
        system_end = first._renderer.prompt(GenerationRequest(
            messages=[MessageParam(role="user", content="x")], system=SYSTEM, max_tokens=1)).system_end
    finally:
        first.worker.stop()
    assert cold.cache_read_tokens < 10
    entries = list_entries(cache_dir)
    assert len(entries) == 1 and len(entries[0].tokens) == system_end > 150

    second = load(tiny_model_dir, cache_dir)  # as after a restart: nothing in memory
    try:
        warm, warm_text = ask(second, "Before the restart")
        other, _ = ask(second, "A different question after it")
    finally:
        second.worker.stop()
    assert warm.cache_read_tokens == system_end and warm_text == cold_text
    assert other.cache_read_tokens >= system_end
    assert len(list_entries(cache_dir)) == 1  # already on disk: not written twice

    assert clear(cache_dir) == (1, entries[0].size_bytes)
    assert list_entries(cache_dir) == []


def test_other_weights_do_not_read_this_models_files(tiny_model_dir, tmp_path):
    from pensieve_model_support.testing import build_tiny_model

    cache_dir = tmp_path / "prefix-cache"
    engine = load(tiny_model_dir, cache_dir)
    try:
        ask(engine, "Seed the disk")
        wait_written(engine)
    finally:
        engine.worker.stop()
    other = load(build_tiny_model(tmp_path / "other", seed=7), cache_dir)
    try:
        started, _ = ask(other, "Seed the disk")
    finally:
        other.worker.stop()
    assert started.cache_read_tokens == 0
