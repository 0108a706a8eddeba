"""What tool handling costs per decoded token, side by side in one run, on the engine itself:

  bare     tools offered, tool_choice auto, no processor (the same prompt as the others)
  auto     the same with the processor watching for a call (each token read back on the CPU)
  forced   tool_choice tool: every token goes through the grammar's mask

  python tools/bench/constraint_cost.py --model DIR [--streams 1 8] [--tokens 128] [--out DIR]

Decode rate = output tokens / time from the first event after Started to Finished, summed over
streams that ran together. Random weights: the numbers are speed, not quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from pensieve_claude_types import MessageParam, Tool, ToolChoiceAuto, ToolChoiceTool
from pensieve_core import Finished, GenerationRequest, Started
from pensieve_inference import EngineOptions, MLXEngine
from pensieve_inference import plan as plan_module
from pensieve_inference.constrained import make_tool_constraint
from pensieve_model_support import HuggingFaceHub, resolve_reference

# Ten tools of Claude Code's kind (names and schema shapes; descriptions kept short).
TOOLS = [
    Tool(
        name=name,
        description=f"The {name} tool.",
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "maxLength": 2000},
                "content": {"type": "string", "maxLength": 2000},
                "limit": {"type": "integer", "minimum": 1, "maximum": 2000},
                "recursive": {"type": "boolean"},
            },
            "required": ["path", "content"],
        },
    )
    for name in ("Read", "Write", "Edit", "Bash", "Glob", "Grep", "LS", "WebFetch", "TodoWrite", "Task")
]


MODES = ("bare", "auto", "forced")


def request(mode: str, i: int, tokens: int) -> GenerationRequest:
    extra = {}
    if mode in ("bare", "auto"):
        extra = {"tools": TOOLS, "tool_choice": ToolChoiceAuto()}
    elif mode == "forced":
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


async def run(engine: MLXEngine, mode: str, streams: int, tokens: int, repeats: int) -> dict:
    # "bare": the engine's constraint factory switched off for this run only.
    plan_module.make_tool_constraint = (lambda *a, **k: None) if mode == "bare" else make_tool_constraint
    rates = []
    for r in range(repeats):
        results = await asyncio.gather(*(one(engine, request(mode, r * streams + i, tokens)) for i in range(streams)))
        total = sum(out - 1 for out, _, _ in results)
        span = max(e for _, _, e in results) - min(f for _, f, _ in results)
        rates.append(total / span if span > 0 else 0.0)
    rates.sort()
    return {
        "mode": mode,
        "streams": streams,
        "tok_s_median": round(rates[len(rates) // 2], 1),
        "runs": [round(x, 1) for x in rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    engine = MLXEngine.load_sync(resolve_reference(args.model), HuggingFaceHub(), EngineOptions(prefix_cache_bytes=0))

    async def all_runs() -> list[dict]:
        await run(engine, "forced", 1, 16, 1)  # warm up: compile kernels, build the grammar tokenizer
        rows = []
        for streams in args.streams:
            for mode in MODES:  # interleaved per stream count: same conditions
                rows.append(await run(engine, mode, streams, args.tokens, args.repeats))
                print(json.dumps(rows[-1]), flush=True)
        return rows

    rows = asyncio.run(all_runs())
    result = {
        "label": args.label,
        "model": args.model,
        "machine": platform.machine(),
        "tokens": args.tokens,
        "rows": rows,
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = f"constraint-cost-{args.label or 'run'}"
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        lines = [
            "| streams | bare tok/s | auto tok/s | forced tok/s | auto/bare | forced/bare |",
            "|---|---|---|---|---|---|",
        ]
        for streams in args.streams:
            by = {r["mode"]: r["tok_s_median"] for r in rows if r["streams"] == streams}
            lines.append(
                f"| {streams} | {by['bare']} | {by['auto']} | {by['forced']} | "
                f"{by['auto'] / by['bare']:.2f} | {by['forced'] / by['bare']:.2f} |"
            )
        (out / f"{name}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    asyncio.run(engine.aclose())


if __name__ == "__main__":
    main()
