"""KV-cache quantization (the `kv_bits` setting) at none, 8 and 4 bits, side by side in one run:

  memory      the cache's bytes per token after a long prompt (nbytes over the allocated
              length), beside what `pensieve validate` computes from the config; and the peak
              of MLX's memory above the weights over the whole run (activations included)
  decode      tok/s after the first token at that context, through mlx-lm's generate_step on a
              cache quantized from its first token, and through MLXEngine with kv_bits
  agreement   against the full-precision cache, greedy: the first token where the free-running
              answer differs, and (teacher-forced on the full-precision answer) the share of
              positions whose greedy token is the same; the engine's answer is compared too

  uv run python tools/bench/kv_quant.py [--model DIR|REF] [--context 2048] [--tokens 64] [--out DIR] [--smoke]

Without --model a random-weight llama is built (hidden 256, 4 layers, head dim 64; float32, as
MLX's CPU runs fastest). Random weights are a harsh test of agreement: their logits have no
confident tokens, so a small change in attention flips more of them than in a trained model.
--model takes any reference pensieve loads (smollm2-135m is the bundled one; its quantized
weights are dequantized to float32 for the CPU). The prompt is this repository's docs, cut to
--context tokens. Writes kv-quant-LABEL.json and .md into --out (docs/performance).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import QuantizedKVCache, make_prompt_cache
from mlx_lm.utils import dequantize_model

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, ModelCard, TextDelta
from pensieve_inference import EngineOptions, GenerationWorker, MLXEngine, PromptRenderer
from pensieve_inference.kv_quant import KVQuantization, quantized
from pensieve_model_support import HuggingFaceHub, LoadedModel, kv_layout, load_model, resolve_reference
from pensieve_model_support.testing import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: tuple[int | None, ...] = (None, 8, 4)


def long_request(loaded: LoadedModel, context: int, tokens: int) -> GenerationRequest:
    """A user message of about `context` tokens of this repository's docs, asking to go on."""
    text = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    while len(ids) < context:
        ids = ids + ids
    body = loaded.tokenizer.decode(ids[: context - 40])
    message = MessageParam(role="user", content=f"{body}\n\nContinue the text above.")
    return GenerationRequest(messages=[message], max_tokens=tokens, temperature=0.0)


def fresh_cache(loaded: LoadedModel, bits: int | None) -> list[Any]:
    cache = make_prompt_cache(loaded.model)
    if bits is None:
        return cache
    layout = kv_layout(loaded.config, loaded.model)
    return quantized(cache, KVQuantization(bits=bits, group_size=(layout and layout.group_size) or 64))


def per_token(cache: list[Any]) -> float:
    """Bytes per token of the cache's allocated length (mlx-lm grows it 256 tokens at a time)."""
    length = sum((c.keys[0] if isinstance(c, QuantizedKVCache) else c.keys).shape[2] for c in cache) / len(cache)
    return sum(c.nbytes for c in cache) / length


def raw(loaded: LoadedModel, prompt: list[int], tokens: int, bits: int | None) -> dict[str, Any]:
    cache = fresh_cache(loaded, bits)
    mx.synchronize()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    started = time.perf_counter()
    steps = generate_step(mx.array(prompt), loaded.model, max_tokens=tokens, prompt_cache=cache)
    out = [int(next(steps)[0])]
    first = time.perf_counter()
    out += [int(t) for t, _ in steps]
    end = time.perf_counter()
    return {
        "tokens": out,
        "prefill_s": first - started,
        "decode_tok_s": (len(out) - 1) / max(end - first, 1e-9),
        "bytes_per_token": per_token(cache),
        "peak_above_weights_mb": (mx.get_peak_memory() - base) / 1e6,
        "cache_type": type(cache[0]).__name__,
    }


def teacher_forced(loaded: LoadedModel, prompt: list[int], reference: list[int], bits: int) -> float:
    """The share of positions where the greedy token, given the full-precision answer so far, is that answer's."""
    cache = fresh_cache(loaded, bits)
    for start in range(0, len(prompt) - 1, 512):
        loaded.model(mx.array(prompt[start : min(start + 512, len(prompt) - 1)])[None], cache=cache)
        mx.eval([c.state for c in cache])
    logits = loaded.model(mx.array([prompt[-1], *reference[:-1]])[None], cache=cache)[0]
    greedy = mx.argmax(logits, axis=-1).tolist()
    return sum(a == b for a, b in zip(greedy, reference, strict=True)) / len(reference)


def said(loaded: LoadedModel, tokens: list[int]) -> str:
    """The text of `tokens` up to an end-of-turn token, where the engine stops."""
    eos = set(loaded.tokenizer.eos_token_ids)
    end = next((i for i, t in enumerate(tokens) if t in eos), len(tokens))
    return str(loaded.tokenizer.decode(tokens[:end])).strip()


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


async def engine_run(engine: MLXEngine, request: GenerationRequest) -> tuple[str, float]:
    first = end = 0.0
    text, output = [], 0
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            first = first or time.perf_counter()
            text.append(event.text)
        if isinstance(event, Finished):
            end, output = time.perf_counter(), event.output_tokens
    return "".join(text), (output - 1) / max(end - first, 1e-9)


def run(loaded: LoadedModel, context: int, tokens: int) -> dict[str, Any]:
    request = long_request(loaded, context, tokens)
    prompt = PromptRenderer(loaded.tokenizer, "bench").prompt(request).tokens
    layout = kv_layout(loaded.config, loaded.model)
    rows: dict[str, dict[str, Any]] = {}
    for bits in SETTINGS:
        r = raw(loaded, prompt, tokens, bits)
        reference = rows["none"]["tokens"] if bits is not None else r["tokens"]
        r["computed_bytes_per_token"] = layout.bytes_per_token(bits) if layout else None
        r["first_difference"] = first_difference(r["tokens"], reference)
        r["teacher_forced_agreement"] = 1.0 if bits is None else teacher_forced(loaded, prompt, reference, bits)
        # The same weights as the raw runs (dequantized ones too), on a worker of its own.
        card = ModelCard(id="bench", source="mlx", context_length=loaded.context_length)
        engine = MLXEngine(loaded, GenerationWorker(), card, EngineOptions(kv_bits=bits, speculative="off"))
        try:
            text, rate = asyncio.run(engine_run(engine, request))
        finally:
            engine.worker.stop()
        r["engine_decode_tok_s"] = rate
        r["engine_same_as_generate_step"] = text.strip() == said(loaded, r["tokens"])
        r["engine_same_as_full_precision"] = text.strip() == said(loaded, reference)
        rows["none" if bits is None else str(bits)] = r
    return {"prompt_tokens": len(prompt), "answer_tokens": tokens, "settings": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# KV-cache quantization — {result['label']}",
        "",
        f"{result['device']}; {result['model']}; prompt {result['prompt_tokens']} tokens, "
        f"{result['answer_tokens']} greedy tokens; decode is tok/s after the first token.",
        "",
        "| kv_bits | cache bytes/token (measured) | computed (validate) | vs full | peak above weights | "
        "decode generate_step | decode engine | first difference | same greedy token (teacher-forced) | "
        "engine = generate_step | engine = full precision |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    full = result["settings"]["none"]["bytes_per_token"]
    for name, r in result["settings"].items():
        diff = "—" if r["first_difference"] is None else f"token {r['first_difference']}"
        same = ["yes" if r[k] else "no" for k in ("engine_same_as_generate_step", "engine_same_as_full_precision")]
        computed = "?" if r["computed_bytes_per_token"] is None else f"{r['computed_bytes_per_token']:,.0f}"
        lines.append(
            f"| {name} | {r['bytes_per_token']:,.0f} | {computed} | {r['bytes_per_token'] / full:.2f}x | "
            f"{r['peak_above_weights_mb']:.0f} MB | {r['decode_tok_s']:.1f} | {r['engine_decode_tok_s']:.1f} | "
            f"{diff} | {100 * r['teacher_forced_agreement']:.0f}% | {same[0]} | {same[1]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model reference (default: build a random llama)")
    parser.add_argument("--label", default=None)
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--tokens", type=int, default=64, help="greedy tokens per answer")
    parser.add_argument("--hidden", type=int, default=256, help="the built model's hidden size (head dim 64 at 256)")
    parser.add_argument("--layers", type=int, default=4, help="the built model's layers")
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--smoke", action="store_true", help="seconds: a 300-token prompt, 8 tokens, a 2-layer model")
    args = parser.parse_args()
    if args.smoke:
        args.context, args.tokens, args.hidden, args.layers = 300, 8, 128, 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            size = {"hidden_size": args.hidden, "num_layers": args.layers, "context_length": 8192}
            model = str(build_tiny_model(Path(tmp) / "random", **size))
        loaded = load_model(resolve_reference(model), HuggingFaceHub(), download=False)
        if loaded.quantized and mx.default_device() == mx.cpu:
            loaded.model = dequantize_model(loaded.model)
        if mx.default_device() == mx.cpu:
            loaded.model.set_dtype(mx.float32)  # MLX's CPU has no fast float16 matmul
        mx.eval(loaded.model.parameters())  # converted now, not inside the first run's peak
        measured = run(loaded, args.context, args.tokens)
    label = args.label or ("smoke" if args.smoke else (args.model or f"random-h{args.hidden}-l{args.layers}"))
    result = {
        "label": label,
        "device": f"{platform.machine()} {platform.system()}, MLX {mx.__version__} ({mx.default_device()})",
        "model": args.model or f"random llama, hidden {args.hidden}, {args.layers} layers",
        **measured,
    }
    for r in result["settings"].values():
        r.pop("tokens")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"kv-quant-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"kv-quant-{label}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
