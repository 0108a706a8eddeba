"""A short request while a long prompt prefills, side by side in one run: the prefill lane
(today) against the old path, where every new prompt was prefilled by mlx-lm's BatchGenerator
together with the others (the lane turned off by raising its threshold).

  python tools/bench/head_of_line.py [--tokens 13000] [--hidden 64] [--out DIR] [--smoke]

For each path: the long prompt's prefill time alone, a 2-token request's time to first token
alone, and the same request's TTFT when sent `--delay` seconds into the long prefill; plus the
lane's chunk times (what the short request may have to wait for). Random weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

from pensieve_claude_types import MessageParam
from pensieve_core import GenerationRequest, TextDelta
from pensieve_inference import MLXEngine, batching
from pensieve_model_support import HuggingFaceHub, resolve_reference
from pensieve_model_support.testing import build_tiny_model


def request(text: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=max_tokens, temperature=0.0)


async def ttft(engine: MLXEngine, req: GenerationRequest) -> float:
    start = time.perf_counter()
    first = None
    async for event in engine.generate(req):
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter() - start
    assert first is not None
    return first


def long_text(engine: MLXEngine, tokens: int) -> str:
    words = tokens
    while True:  # until the rendered prompt has `tokens` tokens, within 5%
        text = " ".join(f"w{i % 97}" for i in range(words))
        n = len(engine._renderer.tokens(request(text, 2)))
        if abs(n - tokens) <= tokens * 0.05:
            return text
        words = max(1, int(words * tokens / n))


async def measure(engine: MLXEngine, text: str, delay: float) -> dict[str, float]:
    short = request("Hi", 2)
    await ttft(engine, short)  # warm
    alone = await ttft(engine, short)
    start = time.perf_counter()
    await ttft(engine, request(text + " alone", 2))
    prefill_alone = time.perf_counter() - start
    long_task = asyncio.ensure_future(ttft(engine, request(text + " shared", 2)))
    await asyncio.sleep(delay)
    during = await ttft(engine, short)
    await long_task
    return {"short_ttft_alone_s": alone, "long_prefill_alone_s": prefill_alone, "short_ttft_during_prefill_s": during}


def chunk_times(engine: MLXEngine, tokens: int) -> dict[str, float]:
    """One lane chunk, full and shared size, at about the long prompt's length."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    from pensieve_inference.prefill_lane import SHARED_CHUNK

    def run() -> dict[str, float]:
        model = engine.loaded.model
        cache = make_prompt_cache(model)
        model(mx.zeros((1, max(tokens - batching.PREFILL_STEP, 1)), dtype=mx.int32), cache=cache)
        mx.eval([c.state for c in cache])
        out = {}
        for name, size in (("chunk_full_s", batching.PREFILL_STEP), ("chunk_shared_s", SHARED_CHUNK)):
            start = time.perf_counter()
            model(mx.zeros((1, size), dtype=mx.int32), cache=cache)
            mx.eval([c.state for c in cache])
            out[name] = time.perf_counter() - start
        return out

    return engine.worker.call(run).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=13000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds into the long prefill")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: tiny sizes, to keep the tool alive in CI")
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.delay = 1500, 0.05
    model_dir = build_tiny_model(
        Path(tempfile.mkdtemp()) / "model", context_length=32768, hidden_size=args.hidden, num_layers=4
    )
    engine = MLXEngine.load_sync(resolve_reference(str(model_dir)), HuggingFaceHub())
    try:
        text = long_text(engine, args.tokens)
        result: dict = {
            "machine": platform.platform(),
            "tokens": args.tokens,
            "hidden": args.hidden,
            "delay_s": args.delay,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        result["lane"] = asyncio.run(measure(engine, text, args.delay))
        lane_min = batching.LANE_MIN_TOKENS
        batching.LANE_MIN_TOKENS = 1 << 30  # every prompt through BatchGenerator, as before the lane
        try:
            result["generator"] = asyncio.run(measure(engine, text + " old", args.delay))
        finally:
            batching.LANE_MIN_TOKENS = lane_min
        result.update(chunk_times(engine, args.tokens))
    finally:
        engine.worker.stop()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "head-of-line-cpu.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
