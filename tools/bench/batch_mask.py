"""What a batch's attention mask costs a decode step, side by side in one process, on one model:

  generate_step   one stream, mlx-lm's own loop (no mask: the floor a batch of one should reach)
  forward         the model alone on a BatchKVCache, greedy, each step queued before the last is
                  read (generate_step's pipelining), at each width, three ways:
                    mlx-lm       unpadded rows, mlx-lm's mask array
                    no mask      unpadded rows, pensieve's attention_masks (None: the fused kernel)
                    padded       rows of different lengths: an array either way
  generator       mlx-lm's BatchGenerator at each width, equal-length prompts, both mask settings

On MLX's CUDA backend an array mask rules out the fused decode attention (scaled_dot_product_
attention.cu: supports_sdpa_vector); on the CPU and Metal the columns should be close.

  python tools/bench/batch_mask.py --model DIR [--widths 1 2 4 8 16] [--tokens 128] [--label L]
      [--out DIR] [--smoke]

Writes batch-mask-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.models.cache import BatchKVCache

from pensieve_inference import attention_masks

PROMPT = 256


def prompt(length: int, seed: int) -> list[int]:
    return [(i * 7919 + seed * 104729) % 1000 + 10 for i in range(length)]


def generate_step_tps(model: Any, tokens: int) -> float:
    for _ in zip(range(8), generate_step(mx.array(prompt(PROMPT, 0)), model), strict=False):
        pass  # kernels and allocator
    started = first = time.perf_counter()
    for n, _ in zip(range(tokens), generate_step(mx.array(prompt(PROMPT, 0)), model), strict=False):
        if n == 0:
            first = time.perf_counter()
    return (tokens - 1) / (time.perf_counter() - first) if tokens > 1 else 1 / (first - started)


def forward_tps(model: Any, width: int, tokens: int, padded: bool) -> float:
    """Decode steps of the model alone on a batch cache (prefill not timed)."""
    pads = [(7 * i) % 32 if padded else 0 for i in range(width)]
    if padded and width == 1:
        pads = [5]
    cache = [BatchKVCache(pads) for _ in model.layers]
    rows = mx.array([[0] * pad + prompt(PROMPT - pad, i) for i, pad in enumerate(pads)])
    y = mx.argmax(model(rows, cache=cache)[:, -1:], axis=-1)
    mx.eval(y)

    def step(y: mx.array) -> mx.array:
        return mx.argmax(model(y, cache=cache)[:, -1:], axis=-1)

    for _ in range(4):  # this width's kernels
        y = step(y)
    mx.eval(y)
    started = time.perf_counter()
    for _ in range(tokens):
        nxt = step(y)
        mx.async_eval(nxt)
        y.tolist()
        y = nxt
    mx.eval(y)
    return width * tokens / (time.perf_counter() - started)


def generator_tps(model: Any, width: int, tokens: int) -> float:
    """BatchGenerator's decode after every row's first token, equal-length prompts."""
    best = 0.0
    for max_tokens in (8, tokens):  # the first burst builds this width's kernels
        gen = BatchGenerator(model, stop_tokens=[])
        gen.insert([prompt(PROMPT, i) for i in range(width)], [max_tokens] * width)
        produced, finished, first = 0, 0, 0.0
        while finished < width:
            responses = gen.next_generated()
            if responses and not first:
                first, produced = time.perf_counter(), -len(responses)
            produced += len(responses)
            finished += sum(r.finish_reason is not None for r in responses)
        best = produced / (time.perf_counter() - first)
        gen.close()
    return best


def measure(model: Any, widths: list[int], tokens: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for width in widths:
        row: dict[str, float] = {}
        with attention_masks.installed(False):
            row["forward_mlx_lm"] = forward_tps(model, width, tokens, padded=False)
            row["generator_mlx_lm"] = generator_tps(model, width, tokens)
        with attention_masks.installed(True):
            row["forward_no_mask"] = forward_tps(model, width, tokens, padded=False)
            row["forward_padded"] = forward_tps(model, width, tokens, padded=True)
            row["generator_no_mask"] = generator_tps(model, width, tokens)
        rows[str(width)] = row
        print(f"  {width:2d}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Attention masks in a batch's decode step — {report['label']}",
        "",
        f"{report['machine']}; {report['tokens']} tokens a row after a {PROMPT}-token prompt, greedy.",
        f"generate_step, one stream: {report['generate_step_tps']:.1f} tok/s.",
        "",
        "| width | forward, mlx-lm mask | forward, no mask | forward, padded rows"
        " | BatchGenerator, mlx-lm mask | BatchGenerator, no mask |",
        "|---|---|---|---|---|---|",
    ]
    for width, r in report["widths"].items():
        lines.append(
            f"| {width} | {r['forward_mlx_lm']:.1f} | {r['forward_no_mask']:.1f} | {r['forward_padded']:.1f}"
            f" | {r['generator_mlx_lm']:.1f} | {r['generator_no_mask']:.1f} |"
        )
    lines += ["", "Aggregate tok/s of decode steps (prefill and first token not counted)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, widths 1 and 2, 8 tokens")
    args = parser.parse_args()
    if args.smoke:
        args.widths, args.tokens, args.label = [1, 2], 8, args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        from pensieve_model_support.testing import build_tiny_model

        args.model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    model = load(str(args.model))[0]
    floor = statistics.median(generate_step_tps(model, args.tokens) for _ in range(2))
    print(f"  generate_step: {floor:.1f} tok/s", flush=True)
    label = args.label or "run"
    machine = (
        f"{platform.machine()} {platform.system()}, MLX {importlib.metadata.version('mlx')} ({mx.default_device()})"
    )
    report = {
        "label": label,
        "machine": machine,
        "tokens": args.tokens,
        "generate_step_tps": floor,
        "widths": measure(model, args.widths, args.tokens),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"batch-mask-{label}.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / f"batch-mask-{label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
