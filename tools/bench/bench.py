"""pensieve against mlx_lm.server on the same model directory, same machine, runs interleaved.

    uv run python tools/bench/bench.py --model DIR --label NAME [--profile cpu|gpu]

Measures TTFT and single-stream decode (and raw mlx-lm generate_step as the floor), an
agentic replay (10 turns over a ~10K-token Claude-Code-shaped prefix whose billing line
changes every turn; pensieve with its cache on and off, and mlx_lm.server), aggregate decode
at 1/2/4/8/16 concurrent streams (and raw mlx-lm BatchGenerator as the floor), pensieve's
TTFT on a persisted prefix after a restart (first restore, then what the engine chooses once
it knows both speeds), and each server's peak memory. Writes NAME.json and NAME.md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))  # the Claude-Code-shaped bodies the tests use

from claude_code_body import claude_code_body  # noqa: E402
from clients import Timing, anthropic_stream, openai_stream, to_openai  # noqa: E402
from raw import raw_batch_floor, raw_generate_step_floor  # noqa: E402
from report import TURNS, markdown, ratios  # noqa: E402
from servers import CACHE_BYTES, GpuMemory, Server, start_mlx_lm, start_pensieve  # noqa: E402

CONCURRENCY = (1, 2, 4, 8, 16)
PROFILES: dict[str, dict[str, Any]] = {
    # CPU: a tiny model, short answers; GPU: longer answers, warm-up before each batch size.
    "cpu": {"prompt_words": 350, "decode_tokens": 96, "reps": 3, "turn_tokens": 24, "concurrency_tokens": 48},
    "gpu": {"prompt_words": 350, "decode_tokens": 256, "reps": 3, "turn_tokens": 48, "concurrency_tokens": 128},
    # Every part once at toy sizes, so the benchmark cannot rot unnoticed (run by tests/test_tools.py).
    "smoke": {
        "prompt_words": 20,
        "decode_tokens": 4,
        "reps": 1,
        "turn_tokens": 2,
        "concurrency_tokens": 2,
        "widths": (1, 2),
        "turns": 2,
        "raw_prompt_tokens": 16,
        "probe_words": 600,
    },
}
# Tool descriptions long enough for a ~10K-token prefix (SmolLM2's tokenizer), as Claude Code's.
TOOL_CHARS = 54_000


WORDS = ("alpha", "beta", "gamma", "delta", "omega")


def plain_body(rng: random.Random, words: int, max_tokens: int) -> dict[str, Any]:
    # A nonce first, so no run reuses another's prefix beyond the template's first tokens. Of
    # words, not hex digits, so that every prompt has one length (53 tokens for 30 words with
    # Phi-3's tokenizer; hex gave 51-57): on CUDA, MLX's attention builds a cuDNN graph for each
    # new (batch, query length, key length), ~1 s, which a fresh length would time as decoding.
    nonce = " ".join(rng.choice(WORDS) for _ in range(12))
    text = f"[{nonce}] " + " ".join(rng.choice(WORDS) for _ in range(words))
    return {
        "model": "bench",
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": text}],
    }


NATIVE_TOOLS = False  # set in main from the model's chat template


def ask(server: Server, body: dict[str, Any]) -> Timing:
    if server.name == "pensieve":
        return anthropic_stream(server.port, body)
    return openai_stream(server.port, to_openai(body, native_tools=NATIVE_TOOLS))


def single_stream(servers: list[Server], p: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    results: dict[str, list[Timing]] = {s.name: [] for s in servers}
    for s in servers:  # warm-up
        ask(s, plain_body(rng, 20, 8))
    for _ in range(p["reps"]):
        for s in servers:
            results[s.name].append(ask(s, plain_body(rng, p["prompt_words"], p["decode_tokens"])))
    return {
        name: {
            "ttft_s": statistics.median(t.ttft_s for t in runs),
            "decode_tps": statistics.median(t.decode_tps or 0.0 for t in runs),
            "output_tokens": [t.output_tokens for t in runs],
        }
        for name, runs in results.items()
    }


def concurrency(servers: list[Server], p: dict[str, Any], rng: random.Random) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {s.name: {} for s in servers}
    failed: set[str] = set()
    for n in p.get("widths", CONCURRENCY):
        for s in servers:
            bodies = [plain_body(rng, 30, 8) for _ in range(n)]
            timed = [[plain_body(rng, 30, p["concurrency_tokens"]) for _ in range(n)] for _ in range(p["reps"])]
            if s.name in failed:  # a server that fell over is not asked again: its widths stay NaN
                out[s.name][n] = math.nan
                continue
            try:
                with ThreadPoolExecutor(n) as pool:  # warm-up at this batch size
                    list(pool.map(lambda b, s=s: ask(s, b), bodies))
                runs = []
                for burst in timed:  # a median of bursts: one burst on the H200 varied up to 1.7x
                    started = time.perf_counter()
                    with ThreadPoolExecutor(n) as pool:
                        timings = list(pool.map(lambda b, s=s: ask(s, b), burst))
                    runs.append(sum(t.output_tokens for t in timings) / (time.perf_counter() - started))
            except OSError as exc:  # the peer's crash is a result, not the end of the run
                failed.add(s.name)
                out[s.name][n] = math.nan
                tail = s.log.read_text(errors="replace")[-1500:] if s.log.exists() else ""
                print(f"  concurrency {n:2d} {s.name:<18} FAILED: {exc!r}\n{tail}", flush=True)
                continue
            out[s.name][n] = statistics.median(runs)
            print(f"  concurrency {n:2d} {s.name:<18} {out[s.name][n]:8.1f} tok/s", flush=True)
    return out


def agentic_turn_body(
    convo: list[dict[str, Any]], turn: int, max_tokens: int, rng: random.Random, *, seed: int = 0
) -> dict[str, Any]:
    """Turn `turn` of a Claude-Code-shaped session: the fixed prefix (billing line changed;
    another `seed`, another prefix of the same size), the conversation so far, the new user
    message, the environment system message last."""
    body = claude_code_body(
        billing_suffix=f"{rng.getrandbits(12):03x}",
        prompt="Turn 1: look at the first file.",
        tool_chars=TOOL_CHARS,
        seed=seed,
    )
    first_user, env_message = body["messages"][0], body["messages"][-1]
    asked = [{"role": "user", "content": f"Turn {turn}: now the next file, please."}] if turn > 1 else []
    return {
        **body,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "messages": [first_user, *convo, *asked, env_message],
    }


def agentic(servers: list[Server], p: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    convo: dict[str, list[dict[str, Any]]] = {s.label: [] for s in servers}
    turns: dict[str, list[float]] = {s.label: [] for s in servers}
    cached: dict[str, list[int | None]] = {s.label: [] for s in servers}
    for turn in range(1, p.get("turns", TURNS) + 1):
        seed = rng.getrandbits(32)  # the same billing line for every server in this turn
        for s in servers:
            body = agentic_turn_body(convo[s.label], turn, p["turn_tokens"], random.Random(seed))
            started = time.perf_counter()
            t = ask(s, body)
            turns[s.label].append(time.perf_counter() - started)
            cached[s.label].append(t.cached_tokens)
            # Each server's own answer goes back to it, as a client's would.
            convo[s.label] = [*body["messages"][1:-1], {"role": "assistant", "content": t.text or "(no text)"}]
            print(f"  turn {turn:2d} {s.label:<22} {turns[s.label][-1]:7.2f} s (cached {t.cached_tokens})", flush=True)
    return {label: {"total_s": sum(ts), "turns_s": ts, "cached_tokens": cached[label]} for label, ts in turns.items()}


def restart_warm(model: Path, log_dir: Path, p: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """TTFT of a Claude-Code-shaped first turn: cold, then after a restart from the same home.
    Two system prompts of one size (A, B) are persisted. After the restart A comes first, with
    no speed measured yet (the engine then reads); a long prompt that persists nothing measures
    the prefill speed; then B is read or prefilled, as the engine finds it pays; then a third
    (C), never seen, is prefilled cold in the same process, for a cold time measured alike."""
    home = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    # Room for A, B and C at Phi-3-mini's 3.9 GB each; info level for the skip decisions.
    disk = {"prefix_cache_disk_bytes": 32 * 1024**3, "log_level": "info"}
    first_a, first_b = (agentic_turn_body([], 1, 8, rng, seed=seed) for seed in (0, 1))
    server = start_pensieve(model, home, log_dir, **disk)
    try:
        ask(server, plain_body(rng, 20, 4))  # warm-up that shares no prefix with the bodies
        cold = ask(server, first_a)
        cold_b = ask(server, first_b)
    finally:
        server.stop()  # the persisted prefixes are written before the process exits
    server = start_pensieve(model, home, log_dir, **disk)
    try:
        ask(server, plain_body(rng, 20, 4))
        warm = ask(server, agentic_turn_body([], 1, 8, rng, seed=0))
        probe = ask(server, plain_body(rng, p.get("probe_words", 8000), 4))  # no system prompt: not persisted
        chosen = ask(server, agentic_turn_body([], 1, 8, rng, seed=1))
        cold_c = ask(server, agentic_turn_body([], 1, 8, rng, seed=2))  # cold in this process too
    finally:
        server.stop()
    decisions = [line for line in server.log.read_text().splitlines() if "prefix_cache_restore" in line]
    # The cold to beat: A first in a fresh process of the same home (its compiled kernels kept
    # there) with nothing persisted read; the first process's A also paid the kernels' compiling.
    fresh = start_pensieve(model, home, log_dir, **{**disk, "prefix_cache_disk_bytes": 0})
    try:
        ask(fresh, plain_body(rng, 20, 4))
        cold_fresh = ask(fresh, agentic_turn_body([], 1, 8, rng, seed=0))
    finally:
        fresh.stop()
    return {
        "cold_ttft_s": cold.ttft_s,
        "warm_ttft_s": warm.ttft_s,
        "warm_cached_tokens": warm.cached_tokens or 0,
        "cold_b_ttft_s": cold_b.ttft_s,
        "probe_ttft_s": probe.ttft_s,
        "chosen_ttft_s": chosen.ttft_s,
        "chosen_cached_tokens": chosen.cached_tokens or 0,
        "cold_after_restart_ttft_s": cold_c.ttft_s,
        "cold_fresh_process_ttft_s": cold_fresh.ttft_s,
        "decisions": decisions,  # the engine's log lines on skipped restores, with its estimates
    }


def machine() -> dict[str, Any]:
    import mlx.core as mx

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
    }
    try:
        info["gpu"] = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
            or None
        )
    except OSError:
        info["gpu"] = None
    return info


def servers(model: Path, p: dict[str, Any], rng: random.Random, log_dir: Path, skip: list[str], result: dict) -> None:
    """The parts that run pensieve and mlx_lm.server side by side, with their peak memory."""
    gpu = GpuMemory()
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    pensieve = start_pensieve(model, home, log_dir, prefix_cache_bytes=CACHE_BYTES)
    mlx_lm = start_mlx_lm(model, log_dir)
    try:
        if "single" not in skip:
            result["single_stream"] = single_stream([pensieve, mlx_lm], p, rng)
            print(f"single stream: {result['single_stream']}", flush=True)
        if "concurrency" not in skip:
            result["concurrency_tps"] = concurrency([pensieve, mlx_lm], p, rng)
        if "agentic" not in skip:
            nocache = start_pensieve(
                model,
                Path(tempfile.mkdtemp(prefix="bench-nocache-")),
                log_dir,
                prefix_cache_bytes=0,
                prefix_cache_disk_bytes=0,
            )
            nocache.label = "pensieve (cache off)"
            try:
                result["agentic"] = agentic([pensieve, nocache, mlx_lm], p, rng)
            finally:
                nocache.stop()
        result["peak_rss_bytes"] = {s.label: s.peak_rss_bytes() for s in (pensieve, mlx_lm)}
        result["peak_gpu_bytes"] = (
            {s.label: gpu.peak.get(s.proc.pid) for s in (pensieve, mlx_lm)} if gpu.available else None
        )
    finally:
        pensieve.stop()
        mlx_lm.stop()
        gpu.stop()


def main() -> None:
    global NATIVE_TOOLS, TOOL_CHARS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "performance")
    parser.add_argument("--skip", nargs="*", default=[], help="parts to skip: single concurrency agentic restart")
    parser.add_argument("--tool-chars", type=int, default=TOOL_CHARS, help="size of the replay's tool descriptions")
    parser.add_argument("--widths", type=int, nargs="+", help="the concurrency part's stream counts (the profile's)")
    args = parser.parse_args()
    p = dict(PROFILES[args.profile])
    if args.widths:
        p["widths"] = tuple(args.widths)
    TOOL_CHARS = args.tool_chars
    template = args.model / "chat_template.jinja"
    NATIVE_TOOLS = template.exists() and "tools" in template.read_text()
    rng = random.Random(0)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    result: dict[str, Any] = {
        "label": args.label,
        "model": str(args.model),
        "profile": p,
        "machine": machine(),
        "tool_chars": TOOL_CHARS,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"machine: {result['machine']}", flush=True)

    if "single" not in args.skip:
        result["raw_generate_step"] = raw_generate_step_floor(args.model, p)
        print(f"raw generate_step: {result['raw_generate_step']}", flush=True)
    if "concurrency" not in args.skip:
        raw_rng = random.Random(1)  # the floor's prompts leave the servers' sequence as it was
        result["raw_batch_tps"] = raw_batch_floor(
            args.model,
            p.get("widths", CONCURRENCY),
            p["concurrency_tokens"],
            lambda: plain_body(raw_rng, 30, 0)["messages"],
            reps=p["reps"],
        )
    if {"single", "concurrency", "agentic"} - set(args.skip):
        servers(args.model, p, rng, log_dir, args.skip, result)
    if "restart" not in args.skip:
        result["restart"] = restart_warm(args.model, log_dir, p, rng)
        print(f"restart: {result['restart']}", flush=True)
    result["ratios"] = ratios(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{args.label}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
