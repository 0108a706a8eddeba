"""What tool handling costs per decoded token, side by side in one run, on the engine itself:

  bare     tools offered, tool_choice auto, no processor (the same prompt as the others)
  auto     the same with the processor watching for a call (each token read back on the CPU)
  forced   tool_choice tool: every token goes through the grammar's mask, a batch step's masks
           filled together (pensieve_inference/masks.py)
  forced_rows  the same with each row filling its own mask, one after another

  python tools/bench/constraint_cost.py --model DIR [--streams 1 8] [--tokens 128] [--out DIR]
  python tools/bench/constraint_cost.py --smoke --out DIR    a few seconds, on a tiny tool model

Decode rate = output tokens / time from the first event after Started to Finished, summed over
streams that ran together. Random weights: the numbers are speed, not quality.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from mlx_lm.generate import BatchGenerator

from pensieve_claude_types import MessageParam, Tool, ToolChoiceAuto, ToolChoiceTool
from pensieve_core import Finished, GenerationRequest, Started
from pensieve_inference import EngineOptions, MLXEngine
from pensieve_inference import plan as plan_module
from pensieve_inference.constrained import make_tool_constraint
from pensieve_inference.masks import BatchMasks
from pensieve_inference.prompt import function_spec
from pensieve_model_support import HuggingFaceHub, resolve_reference
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model

# Ten tools of Claude Code's kind (names and schema shapes; descriptions kept short). `content`
# is at least 8,000 characters, so a forced call cannot close before max_tokens and forced rows
# decode as long as bare ones: with random weights calls closed after ~24 tokens, the batch
# shrank, and forced/bare measured a smaller batch rather than the masks' cost.
TOOLS = [
    Tool(
        name=name,
        description=f"The {name} tool.",
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "maxLength": 2000},
                "content": {"type": "string", "minLength": 8000, "maxLength": 10000},
                "limit": {"type": "integer", "minimum": 1, "maximum": 2000},
                "recursive": {"type": "boolean"},
            },
            "required": ["path", "content"],
        },
    )
    for name in ("Read", "Write", "Edit", "Bash", "Glob", "Grep", "LS", "WebFetch", "TodoWrite", "Task")
]


MODES = ("bare", "auto", "forced", "forced_rows")
RAW_MODES = ("bare", "forced", "forced_rows")
BATCH_STEP = BatchMasks.step


def _no_batch_step(self: BatchMasks, generator: object) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()  # no step known: every row fills its own mask


def request(mode: str, i: int, tokens: int) -> GenerationRequest:
    extra = {}
    if mode in ("bare", "auto"):
        extra = {"tools": TOOLS, "tool_choice": ToolChoiceAuto()}
    elif mode in ("forced", "forced_rows"):
        extra = {"tools": TOOLS, "tool_choice": ToolChoiceTool(name="Write")}
    return GenerationRequest(
        messages=[MessageParam(role="user", content=f"Write the file, please ({i}).")],
        max_tokens=tokens,
        temperature=1.0,
        **extra,
    )


async def one(engine: MLXEngine, req: GenerationRequest) -> tuple[int, float, float]:
    first = end = 0.0
    output = 0
    async for event in engine.generate(req):
        now = time.perf_counter()
        if isinstance(event, Started):
            continue
        if not first:
            first = now
        if isinstance(event, Finished):
            end, output = now, event.output_tokens
    return output, first, end


async def once(engine: MLXEngine, mode: str, streams: int, tokens: int, seed: int) -> tuple[float, int, int, float]:
    """One burst of `streams` requests: aggregate decode tok/s, the batch's parallel mask fills
    with the masks they made (the first masks are each row's own), and output tokens a stream."""
    # "bare": the engine's constraint factory switched off for this run only.
    plan_module.make_tool_constraint = (lambda *a, **k: None) if mode == "bare" else make_tool_constraint
    BatchMasks.step = _no_batch_step if mode == "forced_rows" else BATCH_STEP  # type: ignore[method-assign,assignment]
    masks = [b._masks for b in engine._worker._batches.values()]
    fills, filled = sum(m.fills for m in masks), sum(m.filled for m in masks)
    results = await asyncio.gather(*(one(engine, request(mode, seed + i, tokens)) for i in range(streams)))
    total = sum(out - 1 for out, _, _ in results)
    span = max(e for _, _, e in results) - min(f for _, f, _ in results)
    rate = total / span if span > 0 else 0.0
    made = sum(m.fills for m in masks) - fills, sum(m.filled for m in masks) - filled
    return rate, *made, sum(out for out, _, _ in results) / streams


async def run(engine: MLXEngine, streams: int, tokens: int, repeats: int, modes: tuple[str, ...] = MODES) -> list[dict]:
    """Every mode once per repeat, in turn: a machine whose load drifts slows them alike."""
    rates: dict[str, list[float]] = {m: [] for m in modes}
    fills = dict.fromkeys(modes, 0)
    filled = dict.fromkeys(modes, 0)
    outputs: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(repeats):
        for mode in modes:
            rate, f, n, out = await once(engine, mode, streams, tokens, (r * len(MODES) + MODES.index(mode)) * streams)
            rates[mode].append(rate)
            outputs[mode].append(out)
            fills[mode] += f
            filled[mode] += n
    return [
        {
            "mode": mode,
            "streams": streams,
            "tok_s_median": round(sorted(rates[mode])[repeats // 2], 1),
            "runs": [round(x, 1) for x in rates[mode]],
            "fills": fills[mode],
            "masks_per_fill": round(filled[mode] / fills[mode], 2) if fills[mode] else 0,
            "output_tokens_per_stream": round(sum(outputs[mode]) / repeats, 1),
        }
        for mode in modes
    ]


def raw(engine: MLXEngine, mode: str, streams: int, steps: int) -> tuple[float, float]:
    """mlx-lm's BatchGenerator alone, as the batch drives it, `streams` short prompts decoding
    greedily together: decode tok/s over `steps` steps once every row decodes (no prefill in
    the span), and the rows a step held on average (`streams` unless some ended). forced and
    forced_rows write the same tokens, so they do the same work."""
    loaded = engine._loaded
    tokenizer = loaded.tokenizer
    generator = BatchGenerator(loaded.model, stop_tokens=[[t] for t in sorted(tokenizer.eos_token_ids)])
    prompts = [tokenizer.encode(f"Write the file, please ({i}).") for i in range(streams)]
    specs = [function_spec(t) for t in TOOLS if t.name == "Write"]
    dialect = engine._renderer.dialect
    processors: list[list[Any]] = [[] for _ in prompts]
    if mode != "bare":
        for p, row in zip(prompts, processors, strict=True):
            constraint = make_tool_constraint(tokenizer, dialect, specs, forced=True, single=True, prompt_tokens=len(p))
            assert constraint is not None, "the model's dialect has no grammar"
            row.append(constraint)
    generator.insert(prompts, max_tokens=[steps + 64] * streams, logits_processors=processors)
    masks = BatchMasks()
    decoding: set[int] = set()
    while len(decoding) < streams:  # prefill, and the first token of each
        decoding |= {r.uid for r in generator.next()[1]}
    tokens, ran, start = 0, 0, time.perf_counter()
    for _ in range(steps):
        with masks.step(generator) if mode == "forced" else contextlib.nullcontext():
            responses = generator.next()[1]
        tokens += len(responses)
        ran += 1
        if not responses:
            break
    rate = tokens / (time.perf_counter() - start)
    generator.close()
    return rate, tokens / ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model directory (default with --smoke: a tiny one, built)")
    parser.add_argument("--label", default="")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--raw-steps", type=int, default=96, help="decode steps per raw BatchGenerator run")
    parser.add_argument("--out", default="")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 2 streams, 16 tokens, one run")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="fewer, to profile one alone")
    args = parser.parse_args()
    if args.out and set(args.modes) != set(MODES):
        parser.error("--out writes the ratios, which need every mode")
    modes = tuple(args.modes)
    if args.smoke:
        args.streams, args.tokens, args.repeats, args.raw_steps = [1, 2], 16, 1, 8
        args.label = args.label or "smoke"
    if args.model is None:
        if not args.smoke:
            parser.error("--model is needed without --smoke")
        tiny = Path(tempfile.mkdtemp()) / "tiny-tools"
        args.model = str(build_tiny_model(tiny, chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True))

    engine = MLXEngine.load_sync(resolve_reference(args.model), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=0))

    async def all_runs() -> list[dict]:
        await once(engine, "forced", 1, 16, 0)  # warm up: compile kernels, build the grammar tokenizer
        rows = []
        for streams in args.streams:
            for row in await run(engine, streams, args.tokens, args.repeats, modes):
                rows.append(row)
                print(json.dumps(row), flush=True)
        return rows

    rows = asyncio.run(all_runs())
    raw_rows = []
    for streams in args.streams:
        raw_modes = [m for m in RAW_MODES if m in modes]
        rates: dict[str, list[float]] = {m: [] for m in raw_modes}
        held: dict[str, list[float]] = {m: [] for m in raw_modes}
        for _ in range(args.repeats):
            for mode in raw_modes:
                rate, rows_held = raw(engine, mode, streams, args.raw_steps)
                rates[mode].append(rate)
                held[mode].append(rows_held)
        for mode in raw_modes:
            runs = [round(x, 1) for x in rates[mode]]
            raw_rows.append(
                {
                    "mode": mode,
                    "streams": streams,
                    "tok_s_median": sorted(runs)[len(runs) // 2],
                    "runs": runs,
                    "rows_per_step": round(sum(held[mode]) / len(held[mode]), 2),
                }
            )
            print(json.dumps({"raw": True, **raw_rows[-1]}), flush=True)
    result = {
        "label": args.label,
        "model": args.model,
        "machine": platform.machine(),
        "tokens": args.tokens,
        "rows": rows,
        "raw_steps": args.raw_steps,
        "raw_batch_generator": raw_rows,
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = f"constraint-cost-{args.label or 'run'}"
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        lines = [
            "| streams | bare tok/s | auto tok/s | forced tok/s | forced_rows tok/s | auto/bare | forced/bare "
            "| forced_rows/bare |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for streams in args.streams:
            by = {r["mode"]: r["tok_s_median"] for r in rows if r["streams"] == streams}
            ratios = " | ".join(f"{by[m] / by['bare']:.2f}" if by["bare"] else "-" for m in MODES[1:])
            lines.append(
                f"| {streams} | {by['bare']} | {by['auto']} | {by['forced']} | {by['forced_rows']} | {ratios} |"
            )
        lines += [
            "",
            f"mlx-lm's BatchGenerator alone, greedy, {args.raw_steps} decode steps once every row decodes:",
            "",
            "| streams | bare tok/s | forced tok/s | forced_rows tok/s | forced/bare | forced_rows/bare |",
            "|---|---|---|---|---|---|",
        ]
        for streams in args.streams:
            by = {r["mode"]: r["tok_s_median"] for r in raw_rows if r["streams"] == streams}
            lines.append(
                f"| {streams} | {by['bare']} | {by['forced']} | {by['forced_rows']} | "
                f"{by['forced'] / by['bare']:.2f} | {by['forced_rows'] / by['bare']:.2f} |"
            )
        (out / f"{name}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    asyncio.run(engine.aclose())


if __name__ == "__main__":
    main()
