"""Prompt-lookup speculative decoding on edit-shaped turns, side by side in one run:

  generate_step   mlx-lm's plain loop, one token per forward pass
  prompt_lookup   pensieve_inference.speculative.prompt_lookup_steps over the same prompt
  engine off/on   MLXEngine (what a request decoding alone gets), speculative "off" / "prompt_lookup"

  python tools/bench/speculative.py [--model DIR] [--turns 4] [--repeats 3] [--out DIR] [--smoke]

A turn is what an agent does before an edit: the file's text is in the prompt (read with line
numbers, as Claude Code's Read tool shows it), then the answer. "edit" turns ask for an Edit
tool input, whose old_string copies part of the file; "prose" turns ask for a summary, which
copies nothing (what speculation costs when it cannot help). "edit" writes the call as text;
"tool edit" offers the Edit tool and forces it, so the call decodes under the tool constraint
(constrained.py's grammar), with the processor in both raw runs. The built models cannot write
a call, so there the random model is pushed, position by position, to say one copying the
file (`Scripted`); the engine columns, which load the model themselves, are left empty.

With --model DIR (any MLX model directory) both kinds run on that model. Without it two tiny
models are built: a crafted one whose greedy answer is a span of the file (the edit turns) and a
random-weight one (the prose turns). Decode rate = tokens after the first / time after the
first (the prefill is left out). Greedy throughout; the tokens of generate_step and prompt
lookup are compared (identical on the CPU; in bf16 a near-tie may round differently).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
from edit_turns import EDIT_TOOL, Scripted, build_model, edit_call, turn_request, word_file
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache

from pensieve_core import Finished, GenerationRequest, Started
from pensieve_inference import EngineOptions, MLXEngine, PromptRenderer
from pensieve_inference.constrained import make_tool_constraint
from pensieve_inference.processors import SequenceProcessor, Shifted
from pensieve_inference.prompt import function_spec
from pensieve_inference.speculative import DRAFT_TOKENS, NGRAM, LookupStats, prompt_lookup_steps
from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model


def decode_rate(tokens: Any, eos: set[int], processor: SequenceProcessor | None = None) -> tuple[float, list[int]]:
    """Tokens/s after the first, and the tokens (each handed to `processor` as the worker does)."""
    seen = processor.seen if processor is not None else []
    it = iter(tokens)
    out = [int(next(it))]
    seen.append(out[-1])
    started = time.perf_counter()
    for t in it:
        out.append(int(t))
        seen.append(out[-1])
        if out[-1] in eos:  # the engine stops there too
            break
    return (len(out) - 1) / max(time.perf_counter() - started, 1e-9), out


def raw_runs(
    model: Any,
    prompt: list[int],
    max_tokens: int,
    eos: set[int],
    lookup: dict[str, Any],
    constraint: Callable[[], SequenceProcessor] | None = None,
) -> dict[str, Any]:
    """Both loops over `prompt`, each with a fresh `constraint()` when there is one."""
    first = constraint() if constraint is not None else None
    plain_steps = generate_step(
        mx.array(prompt),
        model,
        max_tokens=max_tokens,
        prompt_cache=make_prompt_cache(model),
        logits_processors=[Shifted(first, 0)] if first is not None else None,
    )
    plain, plain_tokens = decode_rate((t for t, _ in plain_steps), eos, first)
    stats = LookupStats()
    cache = make_prompt_cache(model)
    second = constraint() if constraint is not None else None
    steps = prompt_lookup_steps(
        prompt,
        0,
        model,
        prompt_cache=cache,
        max_tokens=max_tokens,
        stats=stats,
        processors=[second] if second is not None else (),
        **lookup,
    )
    lookup_rate, lookup_tokens = decode_rate((t for t, _ in steps), eos, second)
    # Exact on the CPU (tested); in bf16 on a GPU a pass over several positions may round a
    # near-tie the other way, as any change of batch shape may: the first difference is kept.
    same = next((i for i, (a, b) in enumerate(zip(plain_tokens, lookup_tokens, strict=False)) if a != b), None)
    if same is None and len(plain_tokens) != len(lookup_tokens):
        same = min(len(plain_tokens), len(lookup_tokens))
    return {
        "generate_step": plain,
        "prompt_lookup": lookup_rate,
        "tokens": len(plain_tokens),
        "stats": stats,
        "differs_at": same,
    }


async def engine_rate(engine: MLXEngine, request: GenerationRequest) -> float:
    first = end = 0.0
    output = 0
    async for event in engine.generate(request):
        now = time.perf_counter()
        if isinstance(event, Started):
            continue
        first = first or now
        if isinstance(event, Finished):
            end, output = now, event.output_tokens
    return (output - 1) / max(end - first, 1e-9)


def tool_turn(
    loaded: Any, renderer: PromptRenderer, prompt: list[int], turn: int, copy: str
) -> tuple[Any, Callable[[], SequenceProcessor]]:
    """The tool edit turn's model (pushed to call Edit, old_string = `copy`) and constraint."""
    tokenizer = loaded.tokenizer

    def constraint() -> SequenceProcessor:
        made = make_tool_constraint(
            tokenizer, renderer.dialect, [function_spec(EDIT_TOOL)], forced=True, single=True, prompt_tokens=len(prompt)
        )
        if made is None:
            raise SystemExit(f"the {renderer.dialect.name} dialect has no call grammar: no tool edit turn")
        return made

    if not copy:  # a real model: it writes its own call
        return loaded.model, constraint
    if renderer.dialect.name != "hermes":
        raise SystemExit(f"the pushed call is written in the hermes dialect, not {renderer.dialect.name}'s")
    call = edit_call(f"src/report/helpers_{turn}.py", copy)
    script = tokenizer.encode(call, add_special_tokens=False) + sorted(tokenizer.eos_token_ids)[:1]
    return Scripted(loaded.model, script, len(prompt)), constraint


def run_kind(
    model_dir: Path,
    kind: str,
    text: str | None,
    turns: int,
    repeats: int,
    max_tokens: int,
    lookup: dict[str, Any],
    copy: str = "",
) -> dict[str, Any]:
    """`text`: the file the turns show; for "tool edit", also what its pushed call copies (`copy`)."""
    loaded = load_model(resolve_reference(str(model_dir)), HuggingFaceHub())
    eos = set(loaded.tokenizer.eos_token_ids)
    renderer = PromptRenderer(loaded.tokenizer, "bench")
    tool = kind == "tool edit"
    engines = {
        mode: MLXEngine.load_sync(resolve_reference(str(model_dir)), HuggingFaceHub(), EngineOptions(speculative=mode))
        for mode in (() if tool else ("off", "prompt_lookup"))
    }
    rates: dict[str, list[float]] = {"generate_step": [], "prompt_lookup": [], "engine_off": [], "engine_on": []}
    totals = LookupStats()
    differs: list[int | None] = []
    tokens = 0
    try:
        for turn in range(turns):
            req = turn_request(turn, kind, max_tokens, text)
            prompt = renderer.prompt(req).tokens
            model, constraint = loaded.model, None
            if tool:
                model, constraint = tool_turn(loaded, renderer, prompt, turn, copy)
            for _ in range(repeats):
                raw = raw_runs(model, prompt, max_tokens, eos, lookup, constraint)
                rates["generate_step"].append(raw["generate_step"])
                rates["prompt_lookup"].append(raw["prompt_lookup"])
                differs.append(raw["differs_at"])
                stats, tokens = raw["stats"], tokens + raw["tokens"]
                totals.steps += stats.steps
                totals.drafted += stats.drafted
                totals.accepted += stats.accepted
                if engines:
                    rates["engine_off"].append(asyncio.run(engine_rate(engines["off"], req)))
                    rates["engine_on"].append(asyncio.run(engine_rate(engines["prompt_lookup"], req)))
    finally:
        for engine in engines.values():
            engine.worker.stop()
    median = {name: statistics.median(values) if values else float("nan") for name, values in rates.items()}
    return {
        "tok_s": median,
        "lookup_vs_generate_step": median["prompt_lookup"] / median["generate_step"],
        "engine_on_vs_generate_step": median["engine_on"] / median["generate_step"],
        "engine_on_vs_off": median["engine_on"] / median["engine_off"],
        "acceptance": totals.accepted / max(totals.drafted, 1),
        "tokens_per_step": tokens / max(totals.steps, 1),
        "answer_tokens_mean": tokens / max(turns * repeats, 1),
        "identical_runs": sum(d is None for d in differs) / max(len(differs), 1),
        "first_difference_at": [d for d in differs if d is not None],
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        f"# Speculative decoding (prompt lookup) — {result['label']}",
        "",
        f"{result['device']}; {result['turns']} turns x {result['repeats']} repeats per kind, greedy; "
        "tok/s are medians of decode after the first token.",
        "",
        "| turn | generate_step | prompt lookup | lookup / generate_step | engine off | engine on | "
        "engine on / generate_step | engine on / off | drafts accepted | tokens per forward pass | "
        "same tokens as generate_step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in result["kinds"].items():
        t = r["tok_s"]
        rows.append(
            f"| {kind} ({r['answer_tokens_mean']:.0f} tokens) | {t['generate_step']:.0f} | {t['prompt_lookup']:.0f} | "
            f"**{r['lookup_vs_generate_step']:.2f}x** | {t['engine_off']:.0f} | {t['engine_on']:.0f} | "
            f"**{r['engine_on_vs_generate_step']:.2f}x** | {r['engine_on_vs_off']:.2f}x | "
            f"{100 * r['acceptance']:.0f}% | {r['tokens_per_step']:.2f} | {100 * r['identical_runs']:.0f}% of runs |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model directory (default: build tiny ones)")
    parser.add_argument("--label", default=None)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256, help="max_tokens per answer")
    parser.add_argument("--hidden", type=int, default=64, help="built models' hidden size")
    parser.add_argument("--layers", type=int, default=2, help="built models' layers")
    parser.add_argument("--tokenizer-from", type=Path, help="build the models with this tokenizer (bf16, head dim 128)")
    parser.add_argument("--draft-tokens", type=int, default=DRAFT_TOKENS, help="most drafts per step (raw runs)")
    parser.add_argument("--ngram", type=int, nargs=2, default=NGRAM, help="longest and shortest suffix looked up")
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="a few seconds: one short turn of each kind")
    args = parser.parse_args()
    if args.smoke:
        args.turns, args.repeats, args.tokens = 1, 1, 24
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            models: dict[str, tuple[Path, str | None]] = {"edit": (args.model, None), "prose": (args.model, None)}
            models["tool edit"] = (args.model, None)  # the model writes its own call
            copy = ""
            label = args.label or args.model.name
        else:
            if args.tokenizer_from is not None:
                shape = {"hidden": args.hidden, "layers": args.layers}
                random_dir = build_model(Path(tmp) / "random", args.tokenizer_from, **shape)
            else:
                size = {"hidden_size": args.hidden, "num_layers": args.layers, "context_length": 8192}
                random_dir = build_tiny_model(Path(tmp) / "random", **size)
            tokenizer = load_model(resolve_reference(str(random_dir)), HuggingFaceHub()).tokenizer
            text, reply = word_file(tokenizer)
            if args.tokenizer_from is not None:
                copying = build_model(Path(tmp) / "copying", args.tokenizer_from, reply=reply, **shape)
            else:
                copying = build_tiny_model(Path(tmp) / "copying", reply=reply, **size)
            # The tool edit turn needs a template with a call dialect: the given tokenizer's own.
            tools_dir = random_dir
            if args.tokenizer_from is None:
                tools_dir = build_tiny_model(
                    Path(tmp) / "tools", chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True, **size
                )
            models = {"edit": (copying, text), "prose": (random_dir, None), "tool edit": (tools_dir, text)}
            copy = reply.strip()
            label = args.label or ("smoke" if args.smoke else f"built-h{args.hidden}-l{args.layers}")
        lookup = {"draft_tokens": args.draft_tokens, "ngram": tuple(args.ngram)}
        # The call's opening (name, file_path) takes ~30 tokens before the copy starts.
        tokens = {kind: max(args.tokens, 96) if kind == "tool edit" else args.tokens for kind in models}
        kinds = {
            kind: run_kind(path, kind, text, args.turns, args.repeats, tokens[kind], lookup, copy)
            for kind, (path, text) in models.items()
        }
    result = {
        "label": label,
        "device": f"{platform.machine()} {platform.system()},"
        f" MLX {importlib.metadata.version('mlx')} ({mx.default_device()})",
        "turns": args.turns,
        "repeats": args.repeats,
        "max_tokens": args.tokens,
        "draft_tokens": args.draft_tokens,
        "ngram": args.ngram,
        "kinds": kinds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"speculative-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"speculative-{label}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
