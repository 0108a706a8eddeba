"""How fast a persisted prefix comes back from disk: writes one prefix-cache file of a chosen
shape with `cache_file.write` into a temporary folder, then times, best of --repeats and with the
file in the page cache (a restart soon after a run, the case restores are for):

  header       cache_file.read_header: the header's checks, no tensor
  file_read    the whole file into one preallocated buffer from one thread (a host read's pace)
  mlx_load     mx.load and eval: MLX's own reader into MLX arrays, nothing checked
  digest_1     the file's digest over those arrays in memory, one thread
  digest_N     the same with cache_file's pool (one thread a core)
  verify       cache_file.verify: the header, then every piece read and hashed by the pool
  read         cache_file.read and eval, what a restore costs (prefix_cache.py measures this)

Speeds are the file's bytes over the seconds. With --layers 32 --kv-heads 8 --head-dim 128 and
float16 (a Llama-3-8B-like layout) a token costs 128 KiB, so --tokens 12000 is a 1.5 GiB file.

  uv run python tools/bench/cache_read.py [--tokens 12000] [--layers 32] [--kv-heads 8]
      [--head-dim 128] [--dtype float16] [--repeats 3] [--label L] [--out DIR] [--smoke]

Writes cache-read-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache

from pensieve_inference import cache_file

MODEL = "bench-weights"


def write_file(folder: Path, layers: int, heads: int, tokens: int, dim: int, dtype: mx.Dtype) -> tuple[Path, float]:
    """A file as the disk store names it (model folder, token hash), and the seconds writing took."""
    ids = tuple(range(tokens))
    (folder / MODEL).mkdir(parents=True)
    path = folder / MODEL / f"{cache_file.token_hash(ids)}.safetensors"
    cache = []
    for _ in range(layers):
        keys, values = (mx.random.uniform(shape=(1, heads, tokens, dim)).astype(dtype) for _ in range(2))
        cache.append(KVCache.from_state((keys, values, tokens)))
    mx.eval([c.state for c in cache])
    started = time.perf_counter()
    cache_file.write(path, cache, model=MODEL, model_name="bench", tokens=ids)
    return path, time.perf_counter() - started


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def file_read(path: Path) -> None:
    buffer = bytearray(path.stat().st_size)
    with path.open("rb", buffering=0) as f:
        f.readinto(buffer)


def mlx_load(path: Path) -> dict[str, mx.array]:
    arrays = mx.load(str(path))
    assert isinstance(arrays, dict)
    mx.eval(list(arrays.values()))
    return arrays


def digest(header: cache_file.CacheHeader, arrays: dict[str, mx.array], workers: int) -> str:
    """The digest as `read` computes it, over arrays already in memory (cache_file's internals)."""
    saved = cache_file._WORKERS
    cache_file._WORKERS = workers
    try:
        pieces = (
            piece
            for n, a in sorted(arrays.items())
            for piece in cache_file._pieces(
                n, header.tensors[n].dtype, list(a.shape), a.nbytes, cache_file._bytes_of(a)
            )
        )
        return cache_file._digest(header.model, json.dumps(list(header.tokens)), pieces)
    finally:
        cache_file._WORKERS = saved


def restore(path: Path) -> None:
    _, layers = cache_file.read(path)
    mx.eval([c.state for c in layers])


def measure(path: Path, repeats: int) -> dict[str, list[float]]:
    file_read(path)  # into the page cache: every phase below reads from memory
    header = cache_file.read_header(path)
    arrays = mlx_load(path)
    assert digest(header, arrays, cache_file._WORKERS) == header.digest
    workers = cache_file._WORKERS
    phases = {
        "header": timed(lambda: cache_file.read_header(path), repeats),
        "file_read": timed(lambda: file_read(path), repeats),
        "mlx_load": timed(lambda: mlx_load(path), repeats),
        "digest_1": timed(lambda: digest(header, arrays, 1), repeats),
        f"digest_{workers}": timed(lambda: digest(header, arrays, workers), repeats),
        "verify": timed(lambda: cache_file.verify(path), repeats),
        "read": timed(lambda: restore(path), repeats),
    }
    return phases


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Reading a prefix-cache file back — {result['label']}",
        "",
        f"{result['device']}; {result['file_bytes'] / 1e9:.2f} GB file ({result['shape']}), "
        f"page cache warm, best of {result['repeats']}. Written in {result['write_s']:.2f} s.",
        "",
        "| phase | best (s) | median (s) | GB/s |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in result["phases"].items():
        lines.append(f"| {name} | {row['best_s']:.3f} | {row['median_s']:.3f} | {row['gb_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=12000)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="seconds: 2 layers of 256 tokens, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.layers, args.repeats = 256, 2, 1
    shape = f"{args.layers} layers x (1, {args.kv_heads}, {args.tokens}, {args.head_dim}) {args.dtype}"
    with tempfile.TemporaryDirectory() as tmp:
        path, write_s = write_file(
            Path(tmp), args.layers, args.kv_heads, args.tokens, args.head_dim, getattr(mx, args.dtype)
        )
        size = path.stat().st_size
        phases = measure(path, args.repeats)
    label = args.label or ("smoke" if args.smoke else f"{platform.machine()}-{args.tokens}-tokens")
    result = {
        "label": label,
        "device": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores,"
        f" MLX {importlib.metadata.version('mlx')} ({mx.default_device()})",
        "shape": shape,
        "file_bytes": size,
        "repeats": args.repeats,
        "write_s": write_s,
        "phases": {
            name: {"best_s": min(s), "median_s": statistics.median(s), "gb_per_s": size / min(s) / 1e9}
            for name, s in phases.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"cache-read-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"cache-read-{label}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
