"""One model in one process vs sharded across ranks (`pensieve start --hostfile`), side by side.

    uv run python tools/bench/ranks.py [--hidden 768 --layers 12] [--ranks 2] [--label ranks-cpu] [--smoke]

Builds a random qwen2-shaped model (mlx-lm splits qwen2 both ways) and starts, one after the
other, the one-process server and the same model over N ranks on this machine, tensor-parallel
and in a pipeline (MLX's ring backend over 127.0.0.1; `--backend nccl` on a host with N GPUs).
For each: every rank's weights and MLX memory (from /v1/status), time to first token for a
256-word prompt, one stream's decode, and the aggregate decode of 8 streams; and whether the
greedy answers equal the one-process server's. Writes LABEL.json and LABEL.md into --out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import ask, machine, plain_body  # noqa: E402
from servers import Server, start_pensieve  # noqa: E402

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"prompt_words": 256, "decode_tokens": 32, "streams": 8, "stream_tokens": 16, "reps": 2},
    "smoke": {"prompt_words": 20, "decode_tokens": 4, "streams": 2, "stream_tokens": 2, "reps": 1},
}
KEY = "pensieve-local-key"


def status(server: Server) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/status", headers={"x-api-key": KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def start(model: Path, work: Path, label: str, ranks: int, backend: str, pipeline: bool) -> Server:
    home = work / label
    home.mkdir()
    settings: dict[str, Any] = {"prefix_cache_bytes": 0}  # every request prefills: compare the model's work
    if ranks > 1:
        hostfile = home / "hosts.json"
        hostfile.write_text(json.dumps({"hosts": [{"ssh": "127.0.0.1"}] * ranks}))
        settings.update(hostfile=hostfile, backend=backend, pipeline="true" if pipeline else "false")
    server = start_pensieve(model, home, work, **settings)
    server.label = label
    return server


def measure(server: Server, p: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ask(server, plain_body(rng, 20, 8))  # warm-up
    singles = [ask(server, plain_body(rng, p["prompt_words"], p["decode_tokens"])) for _ in range(p["reps"])]
    bodies = [plain_body(rng, 30, p["stream_tokens"]) for _ in range(p["streams"])]
    with ThreadPoolExecutor(len(bodies)) as pool:  # warm-up at this width
        list(pool.map(lambda b: ask(server, b), bodies))
    started = time.perf_counter()
    with ThreadPoolExecutor(len(bodies)) as pool:
        streams = list(pool.map(lambda b: ask(server, b), bodies))
    wall = time.perf_counter() - started
    greedy = random.Random(0)
    answers = [ask(server, plain_body(greedy, 12, 12)).text for _ in range(3)]
    numbers = status(server)
    ranks = numbers.get("ranks") or [
        {
            "rank": 0,
            "weights_bytes": numbers["memory"]["weights_bytes"],
            "memory_bytes": numbers["memory"]["active_bytes"],
        }
    ]
    return {
        "ttft_s": statistics.median(t.ttft_s for t in singles),
        "decode_tps": statistics.median(t.decode_tps or 0.0 for t in singles),
        "streams_tps": sum(t.output_tokens for t in streams) / wall,
        "ranks": [{k: r[k] for k in ("rank", "weights_bytes", "memory_bytes")} for r in ranks],
        "answers": answers,
    }


LATENCY = """
import time, mlx.core as mx
group = mx.distributed.init(strict=True, backend="ring")
x = mx.array([1.0])
for _ in range(20):
    mx.eval(mx.distributed.all_sum(x, group=group))
started = time.perf_counter()
for _ in range(200):
    mx.eval(mx.distributed.all_sum(x, group=group))
print((time.perf_counter() - started) / 200 * 1000)
"""


def collective_ms(ranks: int, work: Path) -> float:
    """One small all_sum's round trip between `ranks` processes here (ring over 127.0.0.1)."""
    import os
    import socket
    import subprocess

    ports = []
    for _ in range(ranks):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    ring = work / "latency-ring.json"
    ring.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in ports]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LATENCY],
            env={**os.environ, "MLX_RANK": str(r), "MLX_HOSTFILE": str(ring)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in range(ranks)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    return float(outs[0].strip().splitlines()[-1])


def markdown(r: dict[str, Any]) -> str:
    one = r["runs"]["1 process"]
    lines = [
        f"# {r['label']}",
        "",
        f"{r['machine']['device']}, MLX {r['machine']['mlx']}, {r['machine']['cpus']} CPUs; model: random qwen2, "
        f"hidden {r['hidden']}, {r['layers']} layers; backend {r['backend']}.",
        "",
        "| run | weights per rank (MB) | vs one process | MLX memory per rank (MB) | TTFT (s) "
        f"| decode, 1 stream (tok/s) | {r['profile']['streams']} streams (tok/s) | greedy answers equal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    latency = r.get("collective_ms")
    base = one["ranks"][0]["weights_bytes"]
    for label, run in r["runs"].items():
        weights = " / ".join(f"{x['weights_bytes'] / 1e6:.1f}" for x in run["ranks"])
        share = " / ".join(f"{x['weights_bytes'] / base:.2f}" for x in run["ranks"])
        memory = " / ".join(f"{x['memory_bytes'] / 1e6:.1f}" for x in run["ranks"])
        same = "—" if run is one else ("yes" if run["answers"] == one["answers"] else "**no**")
        lines.append(
            f"| {label} | {weights} | {share} | {memory} | {run['ttft_s']:.3f} | {run['decode_tps']:.1f} "
            f"| {run['streams_tps']:.1f} | {same} |"
        )
    if latency is not None:
        lines += ["", f"One small `all_sum` between {r['ranks']} processes here (ring, 127.0.0.1): {latency:.2f} ms."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--backend", default="ring")
    parser.add_argument("--label", default="ranks-cpu")
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "performance")
    parser.add_argument("--smoke", action="store_true", help="every part once at toy sizes (seconds)")
    args = parser.parse_args()
    from pensieve_model_support.testing import build_tiny_model

    p = PROFILES["smoke" if args.smoke else "full"]
    hidden, layers = (64, 2) if args.smoke else (args.hidden, args.layers)
    result: dict[str, Any] = {
        "label": args.label,
        "machine": machine(),
        "hidden": hidden,
        "layers": layers,
        "backend": args.backend,
        "ranks": args.ranks,
        "profile": p,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "model", hidden_size=hidden, num_layers=layers, model_type="qwen2")
        runs = [("1 process", 1, False), (f"{args.ranks} ranks, tensor", args.ranks, False)]
        runs.append((f"{args.ranks} ranks, pipeline", args.ranks, True))
        for label, ranks, pipeline in runs:
            server = start(model, work, label.replace(" ", "-").replace(",", ""), ranks, args.backend, pipeline)
            try:
                result["runs"][label] = measure(server, p, seed=1)
            finally:
                server.stop()
            shown = {k: v for k, v in result["runs"][label].items() if k != "answers"}
            print(f"  {label}: {json.dumps(shown)}", flush=True)
        result["collective_ms"] = collective_ms(args.ranks, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.label}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
