"""What the first request after a start waits, on a fresh home and again on the same home: MLX's
CUDA build compiles its kernels with NVRTC at first use, and pensieve keeps what it compiled under
`<home>/kernels` (pensieve_metal.keep_compiled_kernels), so only a home's first start should
pay for it. Each start is a real `pensieve start` process; a third start on a second fresh home
is the control (the same machine, nothing kept).

  python tools/bench/first_start.py --model DIR [--label L] [--out DIR]
  python tools/bench/first_start.py --smoke --out DIR      seconds, on a tiny model

Per start: seconds until /health answers, the first request's TTFT and total, a second request's
TTFT, and the files under <home>/kernels afterwards. Writes first-start-LABEL.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import plain_body
from clients import anthropic_stream
from servers import start_pensieve

from pensieve_model_support.testing import build_tiny_model


def one_start(model: Path, home: Path, log_dir: Path, rng: random.Random, tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    server = start_pensieve(model, home, log_dir)
    ready_s = time.perf_counter() - started
    try:
        first = anthropic_stream(server.port, plain_body(rng, 40, tokens))
        second = anthropic_stream(server.port, plain_body(rng, 40, tokens))
    finally:
        server.stop()
    kept = [p for p in (home / "kernels").rglob("*") if p.is_file()]
    return {
        "ready_s": ready_s,
        "first_ttft_s": first.ttft_s,
        "first_total_s": first.total_s,
        "second_ttft_s": second.ttft_s,
        "kernel_files": len(kept),
        "kernel_bytes": sum(p.stat().st_size for p in kept),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# First request after a start — {result['label']}",
        "",
        f"{result['machine']}; model `{result['model']}`; {result['when']}",
        "",
        "| start | ready (s) | first TTFT (s) | first total (s) | second TTFT (s) | kernel files kept |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in result["starts"].items():
        lines.append(
            f"| {name} | {r['ready_s']:.2f} | {r['first_ttft_s']:.3f} | {r['first_total_s']:.3f} "
            f"| {r['second_ttft_s']:.3f} | {r['kernel_files']} ({r['kernel_bytes'] / 2**20:.1f} MiB) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--label", default="smoke")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs" / "performance")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-first-start-"))
    model = args.model or build_tiny_model(scratch / "model")
    tokens = 4 if args.smoke else args.tokens
    rng = random.Random(0)
    log_dir = scratch / "logs"
    log_dir.mkdir()
    home, control = scratch / "home", scratch / "control-home"
    starts = {
        "fresh home": one_start(model, home, log_dir, rng, tokens),
        "same home again": one_start(model, home, log_dir, rng, tokens),
        "another fresh home": one_start(model, control, log_dir, rng, tokens),
    }
    result = {
        "label": args.label,
        "model": str(model),
        "machine": f"{platform.machine()} {platform.system()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "starts": starts,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"first-start-{args.label}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"first-start-{args.label}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
