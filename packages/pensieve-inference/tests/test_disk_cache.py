"""System prompts' caches persist on disk and come back after a restart (a new engine on
the same weights); the files are listed and cleared without MLX."""

import asyncio

import pytest
from structlog.testing import capture_logs

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Started, TextDelta
from pensieve_inference.cache_faults import ALL
from pensieve_inference.disk_cache import clear, list_entries

SYSTEM = "You are the persistence test. " + "Remember the house rules. " * 30


def load(model_dir, cache_dir):
    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    return MLXEngine.load_sync(
        resolve_reference(str(model_dir)),
        HuggingFaceHub(),
        EngineOptions(prefix_cache_bytes=1 << 30, prefix_cache_dir=cache_dir, prefix_cache_disk_bytes=1 << 30),
    )


def ask(engine, text, system=SYSTEM):
    req = GenerationRequest(
        messages=[MessageParam(role="user", content=text)], system=system, max_tokens=8, temperature=0.0
    )

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
        system_end = first._renderer.prompt(
            GenerationRequest(messages=[MessageParam(role="user", content="x")], system=SYSTEM, max_tokens=1)
        ).system_end
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


def _kv_cache(tokens=20, layers=2, dtype=None, seed=0):
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    mx.random.seed(seed)
    out = []
    for _ in range(layers):
        c = KVCache()
        c.update_and_fetch(*(mx.random.normal((1, 2, tokens, 8)).astype(dtype or mx.float16) for _ in range(2)))
        out.append(c)
    return out


def _saved(root, tokens=tuple(range(5, 25)), **kv):
    from pensieve_inference.disk_cache import DiskPrefixStore

    store = DiskPrefixStore(root, "weights", 1 << 30, model_name="tiny")
    store.save(list(tokens), _kv_cache(len(tokens), **kv))
    store.wait()
    (path,) = (root / "weights").glob("*.safetensors")
    return path, tokens


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_corrupt_file_is_a_logged_miss_and_is_removed(tmp_path, name):
    """Each corruption: listing and opening the store do not raise, the load is a miss, the
    file is gone and a warning names it."""
    from pensieve_inference.disk_cache import DiskPrefixStore

    root = tmp_path / "prefix-cache"
    path, tokens = _saved(root)
    path.write_bytes(ALL[name](path.read_bytes()))
    list_entries(root)
    with capture_logs() as logs:
        store = DiskPrefixStore(root, "weights", 1 << 30)
        assert store.load(tokens, path) is None
    assert not path.exists()
    assert [e["path"] for e in logs if e["event"] == "prefix_cache_file_corrupt"] == [str(path)]


@pytest.mark.parametrize("name", sorted(ALL))
def test_clear_deletes_what_it_cannot_parse(tmp_path, name):
    path, _ = _saved(tmp_path)
    bad = ALL[name](path.read_bytes())
    path.write_bytes(bad)
    assert clear(tmp_path) == (1, len(bad))
    assert not path.exists()


@pytest.mark.parametrize("name", sorted(ALL))
def test_list_names_the_problem_and_verify_catches_the_rest(tmp_path, name):
    from pensieve_inference.disk_cache import verify_entry

    root = tmp_path / "prefix-cache"
    path, _ = _saved(root)
    path.write_bytes(ALL[name](path.read_bytes()))
    (entry,) = list_entries(root)
    # Only a digest check (a read of every byte) sees a flipped tensor byte; the header is fine.
    assert bool(entry.problem) == (name != "flipped_tensor_bytes")
    assert verify_entry(entry).problem


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_good_file_round_trips_and_stays_mlx_lms_format(tmp_path, dtype):
    import mlx.core as mx
    from mlx_lm.models.cache import load_prompt_cache

    from pensieve_inference.disk_cache import DiskPrefixStore, verify_entry

    path, tokens = _saved(tmp_path, dtype=getattr(mx, dtype))
    (entry,) = list_entries(tmp_path)
    assert entry.problem == "" and verify_entry(entry).problem == "" and entry.tokens == tokens
    loaded = DiskPrefixStore(tmp_path, "weights", 1 << 30).load(tokens, path)
    theirs = load_prompt_cache(str(path))
    expected = _kv_cache(len(tokens), dtype=getattr(mx, dtype))
    for ours, mlx_lm, want in zip(loaded, theirs, expected, strict=True):
        assert ours.offset == mlx_lm.offset == len(tokens)
        assert mx.array_equal(ours.keys, want.keys[..., : len(tokens), :]) and ours.keys.dtype == want.keys.dtype
        assert mx.array_equal(ours.values, mlx_lm.values)


def test_clear_also_deletes_half_written_files(tmp_path):
    path, _ = _saved(tmp_path)
    partial = path.with_name("abc.tmp.safetensors")
    partial.write_bytes(b"half")
    size = path.stat().st_size
    assert clear(tmp_path) == (2, size + 4)
    assert list(tmp_path.iterdir()) == []


def _restarted_after_persisting(model_dir, cache_dir):
    """A second engine on `cache_dir`, after a first one persisted a system prompt there."""
    first = load(model_dir, cache_dir)
    try:
        ask(first, "Before the restart")
        wait_written(first)
    finally:
        first.worker.stop()
    return load(model_dir, cache_dir)


@pytest.mark.parametrize("reading_pays", [True, False])
def test_a_persisted_prefix_is_restored_only_when_reading_beats_prefilling(tiny_model_dir, tmp_path, reading_pays):
    """The speeds as measured on a device where reading wins (a CPU, Apple Silicon), and on
    one where prefilling wins (a fast GPU and a prefix with many KV heads)."""
    second = _restarted_after_persisting(tiny_model_dir, tmp_path / "prefix-cache")
    try:
        speeds = second.prefix_cache.speeds
        speeds.read(1_000_000, 1.0)  # 1 MB/s: the tiny model's file reads in well under a second
        speeds.prefilled(10 if reading_pays else 10**9, 1.0)
        with capture_logs() as logs:
            warm, _ = ask(second, "Before the restart")
    finally:
        second.worker.stop()
    skipped = [e for e in logs if e["event"] == "prefix_cache_restore_skipped"]
    if reading_pays:
        assert warm.cache_read_tokens > 150 and not skipped
    else:
        assert warm.cache_read_tokens < 10 and skipped and skipped[0]["prefill_s"] < skipped[0]["read_s"]


def test_a_restart_guesses_the_read_speed_before_the_first_request(tiny_model_dir, tmp_path, monkeypatch):
    """The first restore after a restart no longer reads blind (Phi-3-mini's 3.6 GB prefix took
    4.2 s to read on the H200 where prefilling it took 1.7 s), and the guess is made at start:
    made by the first request, its read of the file's start cost that request ~50 ms there."""
    from pensieve_inference import restore_cost

    monkeypatch.setattr(restore_cost, "PROBE_BYTES", 1)  # the tiny model's file is a few hundred KB
    first = load(tiny_model_dir, tmp_path / "prefix-cache")
    try:
        ask(first, "Before the restart")
        wait_written(first)
        first.prefix_cache.speeds.prefilled(10**9, 1.0)  # prefilling beats any disk; kept on disk
    finally:
        first.worker.stop()
    second = load(tiny_model_dir, tmp_path / "prefix-cache")
    try:
        speeds = second.prefix_cache.speeds
        assert speeds.read_bytes_per_s is not None  # guessed at start, before any request
        with capture_logs() as logs:
            warm, _ = ask(second, "Before the restart")
    finally:
        second.worker.stop()
    assert warm.cache_read_tokens < 10
    assert any(e["event"] == "prefix_cache_restore_skipped" for e in logs)


def test_the_read_speed_is_guessed_once_only_with_a_prefill_speed_and_a_file_big_enough(tmp_path):
    from pensieve_inference.restore_cost import PROBE_BYTES, DeviceSpeeds

    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(bytes(PROBE_BYTES + 1))
    small.write_bytes(bytes(1000))
    speeds = DeviceSpeeds()
    speeds.probe(big)  # no prefill speed to weigh it against: the restore will measure
    assert speeds.read_bytes_per_s is None
    speeds.prefilled(1000, 1.0)
    speeds.probe(small)  # too small to time well; reading it costs little anyway
    speeds.probe(tmp_path / "gone")
    assert speeds.read_bytes_per_s is None
    speeds.probe(big)
    guess = speeds.read_bytes_per_s
    assert guess is not None and guess > 0
    speeds.probe(big)
    assert speeds.read_bytes_per_s == guess


def test_device_speeds_say_whether_a_read_pays():
    from pensieve_inference.restore_cost import DeviceSpeeds

    speeds = DeviceSpeeds()
    assert speeds.worth_reading(1000, 10**9)  # nothing measured yet: read, and measure it
    speeds.prefilled(10_000, 1.0)  # 10K tokens/s
    speeds.read(2 * 10**9, 1.0)  # 2 GB/s
    assert speeds.worth_reading(10_000, 10**9)  # 0.5 s to read vs 1 s to prefill
    assert not speeds.worth_reading(10_000, 4 * 10**9)  # 2 s to read vs 1 s


def test_the_measured_speeds_survive_a_restart_and_a_broken_file_is_measured_again(tiny_model_dir, tmp_path):
    """So the first restore after a restart is decided by them too (on the H200, reading Phi-3's
    prefix back took 7x the prefill when the speeds were not yet known)."""
    cache_dir = tmp_path / "prefix-cache"
    first = load(tiny_model_dir, cache_dir)
    try:
        first.prefix_cache.speeds.read(3_000_000, 1.0)
        first.prefix_cache.speeds.prefilled(500, 1.0)
        path = first.prefix_cache.disk.speeds_path
    finally:
        first.worker.stop()
    second = load(tiny_model_dir, cache_dir)
    try:
        speeds = second.prefix_cache.speeds
        assert (speeds.read_bytes_per_s, speeds.prefill_tokens_per_s) == (3_000_000, 500)
        assert not speeds.worth_reading(500, 6_000_000)  # 2 s to read vs 1 s: decided at once
    finally:
        second.worker.stop()
    path.write_text('{"read_bytes_per_s": -1}')
    with capture_logs() as logs:
        third = load(tiny_model_dir, cache_dir)
    try:
        assert third.prefix_cache.speeds.read_bytes_per_s is None
        assert any(e["event"] == "device_speeds_unreadable" for e in logs)
    finally:
        third.worker.stop()
