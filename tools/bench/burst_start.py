"""How a burst of N concurrent streams starts on the real server: for each request, when it was
sent, when its response headers came (the worker took it: `Started`), its first token and its
end, with the engine's phases from the `server-timing` header (queue: waiting for the worker;
prefill: Started to the first output). Then what the start cost: the rate while every stream
decodes (from the last first token to the first end: full width), and the burst's wall time
against the time its tokens would take at that rate (lost to the start and the tail); a step's
length at full width (the time between a stream's deltas) and its stalls (steps over three
median steps, what they took beyond one, per stream).

The gap between a server's N-stream aggregate and raw BatchGenerator's (all prompts inserted at
once) is mostly here: requests arrive over HTTP one by one and are admitted as they come.

  python tools/bench/burst_start.py --model DIR [--streams 16] [--tokens 128] [--bursts 3]
      [--label L] [--out DIR]
  python tools/bench/burst_start.py --smoke --out DIR      seconds, on a tiny model

--py-spy PATH records the server's threads (py-spy's speedscope format, idle time in, time
ordered, --nonblocking: pausing the server 500 times a second stretched a 2-core machine's burst
start 10x) from just before measured burst --py-spy-burst (1: the first after the warm-up) is
released, for --py-spy-seconds, into burst-start-LABEL.speedscope.json: what the joiners wait for
between arriving and their first token, and where the worker's time goes at full width. A fresh
home compiles CUDA kernels in the first bursts that meet them (a padded prefill's first roll of
the cache took seconds on the H200): profile a later burst to see a warm one.

Writes burst-start-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import plain_body
from clients import anthropic_stream
from servers import Server, start_pensieve

HERE = Path(__file__).resolve().parent


def server_timing(value: str | None) -> dict[str, float]:
    """`name;dur=ms, ...` as {name: ms}."""
    out = {}
    for part in (value or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = float(dur)
    return out


def one(server: Server, body: dict[str, Any], gate: threading.Barrier, t0: list[float]) -> dict[str, Any]:
    gate.wait()
    t = anthropic_stream(server.port, body)
    phases = server_timing(t.server_timing)
    base, end = t0[0], t.sent_at + t.total_s
    return {
        "sent_s": t.sent_at - base,
        "headers_s": t.headers_at - base,
        "first_token_s": (t.delta_times[0] if t.delta_times else end) - base,
        "deltas_s": [d - base for d in t.delta_times],
        "end_s": end - base,
        "tokens": t.output_tokens,
        "queue_ms": phases.get("queue", 0.0),
        "render_ms": phases.get("render", 0.0),
        "tokenize_ms": phases.get("tokenize", 0.0),
    }


def burst(server: Server, streams: int, tokens: int, rng: random.Random) -> dict[str, Any]:
    bodies = [plain_body(rng, 30, tokens) for _ in range(streams)]
    t0 = [0.0]
    gate = threading.Barrier(streams + 1)
    with ThreadPoolExecutor(streams) as pool:
        futures = [pool.submit(one, server, b, gate, t0) for b in bodies]
        t0[0] = time.perf_counter()
        gate.wait()
        requests = sorted((f.result() for f in futures), key=lambda r: r["first_token_s"])
    wall = max(r["end_s"] for r in requests)
    produced = sum(r["tokens"] for r in requests)
    last_first = requests[-1]["first_token_s"]
    first_end = min(r["end_s"] for r in requests)
    # Tokens while every stream decodes (each delta weighted by its stream's tokens per delta).
    inside = sum(
        sum(last_first < d <= first_end for d in r["deltas_s"]) * r["tokens"] / max(1, len(r["deltas_s"]))
        for r in requests
    )
    steady = inside / (first_end - last_first) if first_end > last_first and inside else float("nan")
    # Time between a stream's deltas while every stream decodes: a step's length, and its stalls.
    gaps = sorted(
        b - a for r in requests for a, b in itertools.pairwise(r["deltas_s"]) if last_first < a and b <= first_end
    )
    step = statistics.median(gaps) if gaps else float("nan")
    for r in requests:
        r["deltas_s"] = [round(d, 4) for d in r["deltas_s"]]
    return {
        "wall_s": wall,
        "tokens": produced,
        "tps": produced / wall,
        "last_first_token_s": last_first,
        "sends_spread_s": max(r["sent_s"] for r in requests) - min(r["sent_s"] for r in requests),
        "last_headers_s": max(r["headers_s"] for r in requests),
        "steady_tps": steady,
        "step_ms": step * 1000,
        "step_p90_ms": gaps[int(0.9 * len(gaps))] * 1000 if gaps else float("nan"),
        "step_max_ms": gaps[-1] * 1000 if gaps else float("nan"),
        # Per stream, what its steps took beyond three median steps, summed (mean over streams).
        "stalls_s": sum(g - step for g in gaps if g > 3 * step) / len(requests) if gaps else float("nan"),
        "lost_s": wall - produced / steady if steady == steady and steady > 0 else float("nan"),
        "requests": requests,
    }


IDLE = {"select", "poll", "epoll", "wait", "get", "_wait_for_tstate_lock", "acquire", "sleep"}


def worker_timeline(
    profile: Path, first_taken_s: float, until_s: float, bin_s: float = 0.025, top: int = 2
) -> list[dict[str, Any]]:
    """The MLX worker's time, bin by bin from the burst's release to `until_s` after it: each
    sample named by its innermost frame in mlx-lm or pensieve's code ("idle" when the thread
    waits), the `top` commonest per bin; and the share of the event loop's samples that were busy.
    py-spy's clock starts when it attaches, so the release is placed `first_taken_s` (the first
    request's Started) before the worker's first busy sample after a quiet start."""
    data = json.loads(profile.read_text())
    frames = data["shared"]["frames"]

    def label(stack: list[int]) -> str:
        if frames[stack[-1]]["name"].rsplit(".", 1)[-1] in IDLE:
            return "idle"
        for i in reversed(stack):
            f = frames[i]
            if "mlx_lm" in f["file"] or "pensieve" in f["file"]:
                return f"{Path(f['file']).stem}:{f['name']}"
        return frames[stack[-1]]["name"]

    def thread(name: str) -> dict[str, Any] | None:
        found = [p for p in data["profiles"] if f'"{name}"' in p["name"]]
        return found[0] if found else None

    worker, at, offset_s = thread("pensieve-mlx"), 0.0, 0.0
    for stack, weight in zip(worker["samples"] if worker else [], worker["weights"] if worker else [], strict=True):
        if at > 0.2 and stack and label(stack) != "idle":  # the warm-up ended before py-spy started
            offset_s = max(0.0, at - first_taken_s)
            break
        at += weight

    def binned(name: str) -> list[list[str]]:
        prof = thread(name)
        bins: list[list[str]] = [[] for _ in range(int(until_s / bin_s) + 1)]
        if prof is None:
            return bins
        at = 0.0
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            k = int((at - offset_s) / bin_s)
            if 0 <= k < len(bins) and stack:
                bins[k].append(label(stack))
            at += weight
        return bins

    rows = []  # bins past the profile's end (py-spy stopped) are left out
    for k, (work, loop) in enumerate(zip(binned("pensieve-mlx"), binned("MainThread"), strict=True)):
        if not work:
            break
        counts = sorted(((work.count(x), x) for x in set(work)), reverse=True)[:top]
        rows.append({
            "from_ms": round(k * bin_s * 1000),
            "worker": [(x, round(n / len(work), 2)) for n, x in counts],
            "event_loop_busy": round(sum(x != "idle" for x in loop) / len(loop), 2) if loop else None,
        })  # fmt: skip
    return rows


def commonest(rows: list[dict[str, Any]], top: int = 6) -> list[tuple[str, float]]:
    """The worker's places over the timeline's rows (each row's commonest, by share), commonest first."""
    totals: dict[str, float] = {}
    for row in rows:
        for name, share in row["worker"]:
            totals[name] = totals.get(name, 0.0) + share / len(rows)
    return sorted(totals.items(), key=lambda x: -x[1])[:top]


def report(result: dict[str, Any]) -> str:
    lines = [
        f"## burst start: {result['label']}",
        "",
        f"Machine: {result['machine']} · model `{Path(result['model']).name}` · {result['streams']} streams of "
        f"{result['tokens']} tokens · {result['when']}",
        "",
        "| burst | wall (s) | tok/s | full width tok/s | lost to start and tail (s) | sends spread (s) "
        "| last headers (s) | last first token (s) | step at full width, median / p90 / max (ms) | stalls (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, b in enumerate(result["bursts"], 1):
        lines.append(
            f"| {i} | {b['wall_s']:.3f} | {b['tps']:.1f} | {b['steady_tps']:.1f} | {b['lost_s']:.3f} "
            f"| {b['sends_spread_s']:.3f} | {b['last_headers_s']:.3f} | {b['last_first_token_s']:.3f} "
            f"| {b['step_ms']:.1f} / {b['step_p90_ms']:.1f} / {b['step_max_ms']:.1f} | {b['stalls_s']:.3f} |"
        )
    median = sorted(result["bursts"], key=lambda b: b["wall_s"])[len(result["bursts"]) // 2]
    lines += [
        "",
        "The median burst's requests, by first token (seconds from the burst's release; queue, render and",
        "tokenize in ms, from `server-timing`):",
        "",
        "| sent | headers (Started) | first token | end | queue | render | tokenize |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in median["requests"]:
        lines.append(
            f"| {r['sent_s']:.3f} | {r['headers_s']:.3f} | {r['first_token_s']:.3f} | {r['end_s']:.3f} "
            f"| {r['queue_ms']:.1f} | {r['render_ms']:.1f} | {r['tokenize_ms']:.1f} |"
        )
    if result.get("worker_timeline"):
        lines += [
            "",
            f"Burst {result['profiled_burst']} in py-spy's samples (bins from the release, placed by the first",
            "request's Started): the worker's two commonest places, and how busy the event loop was:",
            "",
            "| from (ms) | worker | event loop busy |",
            "|---|---|---|",
        ]
        for row in result["worker_timeline"]:
            worker = ", ".join(f"{name} {share:.0%}" for name, share in row["worker"])
            lines.append(f"| {row['from_ms']} | {worker} | {row['event_loop_busy']} |")
    if result.get("full_width"):
        lines += ["", "The same burst at full width, the worker's commonest places (share of its samples):", ""]
        lines += [f"- {name}: {share:.0%}" for name, share in result["full_width"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "performance")
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, 2 streams of 8 tokens")
    parser.add_argument("--py-spy", type=Path, help="py-spy's executable: profile burst --py-spy-burst")
    parser.add_argument("--py-spy-seconds", type=int, default=2)
    parser.add_argument("--py-spy-burst", type=int, default=1, help="which measured burst py-spy records (1-based)")
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.tokens, args.bursts, args.label = 2, 8, 1, args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        from pensieve_model_support.testing import build_tiny_model

        args.model = Path(tempfile.mkdtemp()) / "tiny"
        build_tiny_model(args.model)
    label = args.label or f"{args.model.name}-{args.streams}"
    rng = random.Random(0)
    import mlx.core as mx

    home = Path(tempfile.mkdtemp())
    server = start_pensieve(args.model, home, home)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        burst(server, args.streams, 8, rng)  # warm-up: kernels and this width's shapes
        spy, bursts = None, []
        profiled = min(max(1, args.py_spy_burst), args.bursts)
        for _ in range(profiled - 1 if args.py_spy is not None else 0):
            bursts.append(burst(server, args.streams, args.tokens, rng))
        if args.py_spy is not None:
            profile = args.out / f"burst-start-{label}.speedscope.json"
            spy = subprocess.Popen(
                [str(args.py_spy), "record", "--pid", str(server.proc.pid), "--format", "speedscope", "--idle",
                 "--threads", "--nonblocking", "--rate", "500", "--duration", str(args.py_spy_seconds),
                 "--output", str(profile)],
                stdout=(args.out / f"burst-start-{label}.py-spy.log").open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(0.5)  # py-spy attaches before the burst is released
        while len(bursts) < args.bursts:
            bursts.append(burst(server, args.streams, args.tokens, rng))
        if spy is not None:
            spy.wait(timeout=60 + args.py_spy_seconds)
    finally:
        server.stop()
    result = {
        "label": label,
        "model": str(args.model),
        "machine": f"{platform.platform()} · {mx.default_device()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "streams": args.streams,
        "tokens": args.tokens,
        "bursts": bursts,
        "median_lost_s": statistics.median(b["lost_s"] for b in bursts),
    }
    if spy is not None and profile.exists():
        spied = bursts[profiled - 1]
        taken = min(r["headers_s"] for r in spied["requests"])
        rows = worker_timeline(profile, taken, spied["wall_s"], top=8)
        start_ms = min(spied["wall_s"], spied["last_first_token_s"] + 0.25) * 1000  # the start, and a little after
        result["profiled_burst"] = profiled
        result["worker_timeline"] = [{**r, "worker": r["worker"][:2]} for r in rows if r["from_ms"] <= start_ms]
        result["full_width"] = commonest([r for r in rows if r["from_ms"] > spied["last_first_token_s"] * 1000])
    (args.out / f"burst-start-{label}.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (args.out / f"burst-start-{label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
