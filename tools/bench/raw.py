"""The floors, mlx-lm in the benchmark's own process with no server: `generate_step` for one
stream, `BatchGenerator` for N streams (what both servers drive underneath)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def raw_generate_step(model: Any, prompt_tokens: int, tokens: int) -> dict[str, float]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    prompt = mx.array([(i * 7919) % 1000 + 10 for i in range(prompt_tokens)])
    for _ in zip(range(8), generate_step(prompt, model), strict=False):  # warm-up: kernels, allocator
        pass
    best: dict[str, float] = {}
    for _ in range(2):  # the better of two runs: the floor should not be a slow outlier
        started = time.perf_counter()
        first = started
        for n, _ in zip(range(tokens), generate_step(prompt, model), strict=False):
            if n == 0:
                first = time.perf_counter()
        end = time.perf_counter()
        run = {"ttft_s": first - started, "decode_tps": (tokens - 1) / (end - first)}
        if not best or run["decode_tps"] > best["decode_tps"]:
            best = run
    return best


def _batch_run(model: Any, prompts: list[list[int]], tokens: int) -> float:
    """Aggregate tok/s of one batch, timed as the servers' concurrency part is: from the
    prompts going in to the last token out, prefill included; no stop token ends a stream."""
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, stop_tokens=[])
    started = time.perf_counter()
    gen.insert(prompts, [tokens] * len(prompts))
    produced = finished = 0
    while finished < len(prompts):
        for r in gen.next_generated():
            produced += 1
            finished += r.finish_reason is not None
    wall = time.perf_counter() - started
    gen.close()
    return produced / wall


def raw_batch_floor(
    model_dir: Path, widths: Iterable[int], tokens: int, messages: Callable[[], list[dict[str, str]]], reps: int = 1
) -> dict[int, float]:
    """BatchGenerator at each width, warmed up at that width first, the median of `reps` bursts,
    greedy, on prompts of the concurrency part's shape (`messages`: a fresh conversation each
    call, through the chat template). Measured before the servers start, on a load freed after:
    run between the servers' turns instead, with the model held here, pensieve's 2-stream run
    was 5-6x slower and mlx_lm.server's 1- and 2-stream runs 1.3-1.8x slower on the H200."""
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(model_dir))

    def prompt() -> list[int]:
        ids: list[int] = tokenizer.apply_chat_template(messages(), add_generation_prompt=True)
        return ids

    out: dict[int, float] = {}
    for n in widths:
        _batch_run(model, [prompt() for _ in range(n)], 8)  # kernels at this batch size
        out[n] = statistics.median(_batch_run(model, [prompt() for _ in range(n)], tokens) for _ in range(reps))
        print(f"  concurrency {n:2d} {'raw BatchGenerator':<18} {out[n]:8.1f} tok/s", flush=True)
    del model
    mx.clear_cache()
    return out


def raw_generate_step_floor(model_dir: Path, p: dict[str, Any]) -> dict[str, float]:
    """generate_step on one load of the model, freed before the servers start."""
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(model_dir))
    out = raw_generate_step(model, p.get("raw_prompt_tokens", 512), p["decode_tokens"])
    del model
    mx.clear_cache()
    return out
