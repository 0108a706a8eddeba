"""The engine's batches without the server, against mlx-lm's BatchGenerator, in one process:
N greedy requests handed to MLXEngine.generate at once (no HTTP, no SSE, no arrival spread),
then BatchGenerator alone on the same model with the same prompts, at each width.

  aggregate  output tokens / wall time, prompts in to last token out (prefill included)
  steady     the sum of each stream's decode rate after its first token
  startup    until the last stream's first token
  step       the median decode step once every stream decodes (ModelBatch._batch_step, timed)

Set against bench.py's concurrency part (the same requests through the HTTP server), this
splits what the engine costs from what the server path costs. Prompts are words of one token
length, so every burst at a width has the same shapes (see bench.py's plain_body).

  python tools/bench/engine_batch.py --model DIR [--widths 1 2 8 16] [--tokens 128] [--label L]
      [--out DIR] [--smoke]

Writes engine-batch-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator

import pensieve_inference.batching as batching
from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, TextDelta
from pensieve_inference import EngineOptions, MLXEngine
from pensieve_model_support import HuggingFaceHub, resolve_reference

WORDS = ("alpha", "beta", "gamma", "delta", "omega")


class StepClock:
    """Times ModelBatch._batch_step calls, with the batch's width at each."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, int]] = []
        self._step: Callable[[Any], None] = batching.ModelBatch._batch_step

        def timed(batch: Any) -> None:
            width = len(batch._running)
            started = time.perf_counter()
            self._step(batch)
            self.steps.append((time.perf_counter() - started, width))

        batching.ModelBatch._batch_step = timed  # type: ignore[method-assign,assignment]

    def median_at(self, width: int) -> float:
        full = [s for s, w in self.steps if w == width]
        return statistics.median(full) if full else float("nan")


def text(seed: int) -> str:
    rng = random.Random(seed)
    return "[" + " ".join(rng.choice(WORDS) for _ in range(12)) + "] " + " ".join(rng.choice(WORDS) for _ in range(30))


async def timed_answer(engine: MLXEngine, content: str, tokens: int) -> tuple[float, float, int]:
    """One greedy request through MLXEngine.generate: when its first text came, when it ended,
    and how many tokens it wrote (tools/bench/cuda_attention.py uses it too)."""
    request = GenerationRequest(
        messages=[MessageParam(role="user", content=content)], max_tokens=tokens, temperature=0.0
    )
    first = end = 0.0
    out = 0
    async for event in engine.generate(request):
        now = time.perf_counter()
        if isinstance(event, TextDelta) and not first:
            first = now
        if isinstance(event, Finished):
            end, out = now, event.output_tokens
    return first or end, end, out


async def engine_burst(engine: MLXEngine, width: int, seed: int, tokens: int) -> dict[str, float]:
    started = time.perf_counter()
    runs = await asyncio.gather(*(timed_answer(engine, text(seed + i), tokens) for i in range(width)))
    wall = time.perf_counter() - started
    return {
        "aggregate_tps": sum(n for _, _, n in runs) / wall,
        "steady_tps": sum((n - 1) / (end - first) for first, end, n in runs if end > first and n > 1),
        "startup_s": max(first for first, _, _ in runs) - started,
    }


def raw_burst(engine: MLXEngine, width: int, seed: int, tokens: int) -> dict[str, float]:
    """BatchGenerator on the engine's model and worker thread, the same prompts through the template."""
    loaded = engine._loaded
    prompts = [
        loaded.tokenizer.apply_chat_template([{"role": "user", "content": text(seed + i)}], add_generation_prompt=True)
        for i in range(width)
    ]
    result: dict[str, float] = {}
    for max_tokens in (8, tokens):  # the first run builds this width's kernels
        gen = BatchGenerator(loaded.model, stop_tokens=[])
        started = time.perf_counter()
        gen.insert(prompts, [max_tokens] * width)
        produced = finished = 0
        first = 0.0
        steps: list[float] = []
        while finished < width:
            at = time.perf_counter()
            responses = gen.next_generated()
            steps.append(time.perf_counter() - at)
            first = first or (time.perf_counter() if responses else 0.0)
            produced += len(responses)
            finished += sum(r.finish_reason is not None for r in responses)
        wall = time.perf_counter() - started
        gen.close()
        result = {
            "aggregate_tps": produced / wall,
            "after_first_tps": produced / (time.perf_counter() - first),
            "startup_s": first - started,
            "step_s": statistics.median(steps),
        }
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# The engine's batches against BatchGenerator, in process — {report['label']}",
        "",
        f"{report['machine']}; {report['tokens']} tokens a stream, greedy; medians of {report['repeats']} bursts.",
        "",
        "| streams | engine aggregate | BatchGenerator aggregate | ratio | engine steady | engine startup (ms) |"
        " BatchGenerator startup (ms) | engine step (ms) | BatchGenerator step (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for width, row in report["widths"].items():
        e, r = row["engine"], row["raw"]
        lines.append(
            f"| {width} | {e['aggregate_tps']:.1f} | {r['aggregate_tps']:.1f}"
            f" | {e['aggregate_tps'] / r['aggregate_tps']:.2f}"
            f" | {e['steady_tps']:.1f} | {e['startup_s'] * 1e3:.0f} | {r['startup_s'] * 1e3:.0f}"
            f" | {row['engine_step_s'] * 1e3:.2f} | {r['step_s'] * 1e3:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, widths 1 and 2, 8 tokens")
    args = parser.parse_args()
    if args.smoke:
        args.widths, args.tokens, args.repeats, args.label = [1, 2], 8, 1, args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        from pensieve_model_support.testing import build_tiny_model

        args.model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    clock = StepClock()
    engine = MLXEngine.load_sync(resolve_reference(str(args.model)), HuggingFaceHub(), EngineOptions())

    async def run() -> dict[int, Any]:
        rows: dict[int, Any] = {}
        for width in args.widths:
            await engine_burst(engine, width, 90_000 + width, 8)  # this width's kernels and shapes
            bursts = []
            clock.steps.clear()
            for rep in range(args.repeats):
                bursts.append(await engine_burst(engine, width, 1000 * rep + 100 * width, args.tokens))
            step = clock.median_at(width)
            floor = partial(raw_burst, engine, width, 50_000, args.tokens)  # on the MLX thread
            raw = await asyncio.wrap_future(engine.worker.call(floor))
            med = {k: statistics.median(b[k] for b in bursts) for k in bursts[0]}
            rows[width] = {"engine": med, "engine_runs": bursts, "engine_step_s": step, "raw": raw}
            print(
                f"  {width:2d} streams: engine {med['aggregate_tps']:.1f} tok/s,"
                f" BatchGenerator {raw['aggregate_tps']:.1f}",
                flush=True,
            )
        await engine.aclose()
        return rows

    widths = asyncio.run(run())
    label = args.label or "run"
    machine = (
        f"{platform.machine()} {platform.system()}, MLX {importlib.metadata.version('mlx')} ({mx.default_device()})"
    )
    report = {"label": label, "machine": machine, "tokens": args.tokens, "repeats": args.repeats, "widths": widths}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"engine-batch-{label}.json").write_text(json.dumps(report, indent=2))
    text_md = markdown(report)
    (args.out / f"engine-batch-{label}.md").write_text(text_md)
    print(text_md)


if __name__ == "__main__":
    main()
