"""What the server's event loop spends per streamed token: the real server on a model, bursts of
N concurrent streams, and the CPU time of the process's main thread (the event loop: HTTP, SSE,
the Messages event stream) across each burst, read from /proc (Linux only), per output token.

With --against DIR (another checkout's root, e.g. `git worktree add /tmp/before HEAD~3`), the
same bursts run on that checkout's packages too, alternating, so a change's effect is measured
side by side in one run.

  python tools/bench/event_loop_cost.py --model DIR [--streams 16] [--tokens 256] [--bursts 2]
      [--against DIR] [--label L] [--out DIR] [--smoke]

Writes event-loop-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import ask, plain_body  # noqa: E402
from servers import start_pensieve  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def main_thread_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, in clock ticks


def bursts(model: Path, streams: int, tokens: int, count: int, rng: random.Random) -> list[dict[str, float]]:
    home = Path(tempfile.mkdtemp())
    server = start_pensieve(model, home, home)
    try:
        with ThreadPoolExecutor(streams) as pool:  # warm-up: kernels, this width's shapes
            list(pool.map(lambda b: ask(server, b), [plain_body(rng, 30, 8) for _ in range(streams)]))
        out = []
        for _ in range(count):
            bodies = [plain_body(rng, 30, tokens) for _ in range(streams)]
            cpu, started = main_thread_cpu_s(server.proc.pid), time.perf_counter()
            with ThreadPoolExecutor(streams) as pool:
                timings = list(pool.map(lambda b: ask(server, b), bodies))
            wall = time.perf_counter() - started
            produced = sum(t.output_tokens for t in timings)
            spent = main_thread_cpu_s(server.proc.pid) - cpu
            out.append({"tokens": produced, "tps": produced / wall, "loop_us_per_token": 1e6 * spent / produced})
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--against", type=Path, help="another checkout whose packages run the same bursts")
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "performance")
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, 2 streams of 8 tokens")
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.tokens, args.bursts, args.label = 2, 8, 1, args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        from pensieve_model_support.testing import build_tiny_model

        args.model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    trees: dict[str, str] = {"this tree": ""}
    if args.against is not None:
        trees["against"] = ":".join(str(p) for p in sorted((args.against / "packages").glob("*/src")))
    rng = random.Random(0)
    base = os.environ.get("PYTHONPATH", "")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.bursts):  # alternating: both trees see the same machine load
        for name, path in trees.items():
            os.environ["PYTHONPATH"] = ":".join(p for p in (path, base) if p)  # the server inherits it
            runs[name] += bursts(args.model, args.streams, args.tokens, 1, rng)
            print(f"  {name}: {runs[name][-1]}", flush=True)
    os.environ["PYTHONPATH"] = base
    summary: dict[str, Any] = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("tps", "loop_us_per_token")}
        for name, rs in runs.items()
    }
    label = args.label or "run"
    report = {"label": label, "streams": args.streams, "tokens": args.tokens, "runs": runs, "median": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"event-loop-{label}.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# The event loop's CPU per streamed token — {label}",
        "",
        f"{args.streams} streams of {args.tokens} tokens, medians of {args.bursts} bursts.",
        "",
        "| tree | event loop CPU per token (µs) | aggregate tok/s |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {v['loop_us_per_token']:.0f} | {v['tps']:.1f} |" for n, v in summary.items()]
    text = "\n".join(lines) + "\n"
    (args.out / f"event-loop-{label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
