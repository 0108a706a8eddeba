"""What MLX's cuDNN attention costs a server on CUDA, side by side in one run: each setting of
MLX_CUDA_USE_CUDNN_SDPA (1: MLX's default; 0: what pensieve sets on CUDA unless the user set it,
pensieve_metal.avoid_per_shape_attention) in a process of its own, on one model directory:

  prefill   generate_step's first token after a prompt of each --lengths, in order: the first
            prompt of a length pays cuDNN's graph builds, a repeat of it does not, a new one
            pays again (its last chunk has a new query and key length)
  lookup    one stream through the engine with prompt lookup: every verification pass is
            attention over several query tokens at a new key length
  plain     the same stream with speculation off (one query token a step: never cuDNN's)

cuDNN's graphs are cached by their exact shapes (MLX's SDPACacheKey holds the query and key
shapes), so a server, whose prompts and passes have new lengths all the time, pays builds of
0.2-1 s where a benchmark repeating one prompt would not. On Metal and the CPU the variable does
nothing: both columns measure the same code.

  python tools/bench/cuda_attention.py --model DIR [--lengths 2048 8192 8192 9120]
      [--tokens 128] [--label L] [--out DIR] [--smoke]

Writes cuda-attention-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

SETTINGS = ("1", "0")
VARIABLE = "MLX_CUDA_USE_CUDNN_SDPA"
WORDS = ("alpha", "beta", "gamma", "delta", "omega")


def _prefill(model_dir: Path, lengths: list[int]) -> list[float]:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    model = load(str(model_dir))[0]
    times = []
    for n in lengths:
        prompt = mx.array([(i * 7919) % 1000 + 10 for i in range(n)])
        started = time.perf_counter()
        next(generate_step(prompt, model))
        times.append(time.perf_counter() - started)
    return times


def _lone_stream(model_dir: Path, tokens: int, speculative: Literal["off", "prompt_lookup"]) -> float:
    """Decode tok/s after the first token of one greedy request through the engine (a warm-up first)."""
    import asyncio

    from engine_batch import timed_answer  # this folder: the script's own, first on sys.path

    from pensieve_inference import EngineOptions, MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(
        resolve_reference(str(model_dir)), HuggingFaceHub(), EngineOptions(speculative=speculative)
    )

    async def one(seed: int, max_tokens: int) -> float:
        text = " ".join(WORDS[(seed * 7 + j * 3) % 5] for j in range(40))
        first, end, out = await timed_answer(engine, f"[{seed}] {text}", max_tokens)
        return (out - 1) / (end - first) if out > 1 and end > first else float("nan")

    async def run() -> float:
        await one(1, 8)
        rate = await one(2, tokens)
        await engine.aclose()
        return rate

    return asyncio.run(run())


def child(args: argparse.Namespace) -> None:
    result = {
        "prefill_s": _prefill(args.model, args.lengths),
        "lookup_tps": _lone_stream(args.model, args.tokens, "prompt_lookup"),
        "plain_tps": _lone_stream(args.model, args.tokens, "off"),
    }
    print("RESULT " + json.dumps(result), flush=True)


def measure(args: argparse.Namespace, setting: str) -> dict[str, Any]:
    env = {**os.environ, VARIABLE: setting}
    cmd = [sys.executable, __file__, "--child", "--model", str(args.model), "--tokens", str(args.tokens),
           "--lengths", *map(str, args.lengths)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{VARIABLE}={setting} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    print(f"{VARIABLE}={setting}: {result}", flush=True)
    return result


def markdown(label: str, device: str, lengths: list[int], tokens: int, runs: dict[str, dict[str, Any]]) -> str:
    on, off = runs["1"], runs["0"]
    lines = [
        f"# MLX's cuDNN attention on and off — {label}",
        "",
        f"{platform.machine()} {platform.system()}, {device}; greedy; `{VARIABLE}` per process.",
        "",
        "| measure | cuDNN on (MLX's default) | cuDNN off (pensieve on CUDA) | off / on |",
        "| --- | --- | --- | --- |",
    ]
    seen: set[int] = set()
    for i, n in enumerate(lengths):
        what = "repeat" if n in seen else "first"
        seen.add(n)
        a, b = on["prefill_s"][i], off["prefill_s"][i]
        lines.append(f"| prefill {n} tokens ({what}), s | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    for key, name in (("lookup_tps", "prompt lookup"), ("plain_tps", "speculation off")):
        a, b = on[key], off[key]
        lines.append(f"| one stream, {name}, {tokens} tokens, tok/s | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 8192, 9120])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, short prompts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.lengths, args.tokens, args.label = [16, 32, 32, 48], 8, args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        from pensieve_model_support.testing import build_tiny_model

        args.model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    import mlx.core as mx

    device = f"MLX {importlib.metadata.version('mlx')} ({mx.default_device()})"
    runs = {setting: measure(args, setting) for setting in SETTINGS}
    label = args.label or "run"
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"label": label, "device": device, "lengths": args.lengths, "tokens": args.tokens, "runs": runs}
    (args.out / f"cuda-attention-{label}.json").write_text(json.dumps(report, indent=2))
    text = markdown(label, device, args.lengths, args.tokens, runs)
    (args.out / f"cuda-attention-{label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
