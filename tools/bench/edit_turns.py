"""The edit-shaped workload of speculative.py: source files read with line numbers (as Claude
Code's Read shows them), the turns asked about them, an Edit tool whose old_string copies part
of a file, and the models built for them (a crafted copier, a random one, a pushed caller)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import mlx.core as mx

from pensieve_claude_types import MessageParam, Tool, ToolChoiceTool
from pensieve_core import GenerationRequest
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE

FUNCTIONS = [
    ("parse_range", "text", "start, _, end = text.partition('-')\n    return int(start), int(end or start)"),
    ("load_config", "path", "with open(path) as f:\n        return json.load(f)"),
    ("retry", "fn, attempts=3", "for i in range(attempts):\n        try:\n            return fn()\n"
     "        except OSError:\n            time.sleep(2 ** i)\n    raise RuntimeError('gave up')"),
    ("chunks", "items, size", "return [items[i : i + size] for i in range(0, len(items), size)]"),
    ("slugify", "title", "return '-'.join(w.lower() for w in title.split() if w.isalnum())"),
    ("median", "values", "ordered = sorted(values)\n    mid = len(ordered) // 2\n"
     "    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2"),
]  # fmt: skip


def source_file(turn: int) -> str:
    """A module of small functions, at the turn's revision (the agent has been editing it)."""
    lines = ['"""Helpers for the report generator."""', f"# revision {turn}", "", "import json", "import time", ""]
    for name, args, body in FUNCTIONS:
        lines += ["", f"def {name}({args}):", f"    {body}", ""]
    return "\n".join(lines)


def numbered(text: str) -> str:
    return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(text.splitlines(), 1))


EDIT_TOOL = Tool(
    name="Edit",
    description="Replace old_string, quoted exactly from the file, with new_string.",
    input_schema={
        "type": "object",
        "properties": {
            "file_path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
        },
        "required": ["file_path", "old_string", "new_string"],
    },
)


def turn_request(turn: int, kind: str, max_tokens: int, text: str | None = None) -> GenerationRequest:
    path = f"src/report/helpers_{turn}.py"
    ask = {
        "edit": "Rename the second function's argument to `source` everywhere it is used. Answer with the Edit "
        "tool's input as JSON: file_path, then old_string quoting the lines to replace exactly, then new_string.",
        "tool edit": "Rename the second function's argument to `source` everywhere it is used.",
    }.get(kind, "In two plain sentences, say what this module is for. Quote nothing.")
    messages = [
        MessageParam(role="user", content=f"Please look at {path}."),
        MessageParam(role="assistant", content=f'Read {{"file_path": "{path}"}}'),
        MessageParam(role="user", content=f"{numbered(text or source_file(turn))}\n\n{ask}"),
    ]
    system = "You are a coding agent. You read files and edit them with the Edit tool."
    forced = kind == "tool edit"  # offered and forced: the call decodes under the tool constraint
    return GenerationRequest(
        messages=messages,
        system=system,
        max_tokens=max_tokens,
        temperature=0.0,
        tools=[EDIT_TOOL] if forced else None,
        tool_choice=ToolChoiceTool(name="Edit") if forced else None,
    )


class Scripted:
    """A model pushed to say `script` from `start` tokens into the sequence (by position, from
    its cache), its own logits choosing wherever a processor forbids the scripted token."""

    def __init__(self, model: Any, script: list[int], start: int, push: float = 1e3) -> None:
        self.model, self.start, self.push = model, start, push
        self.script = mx.array(script + [-1] * 4096)  # -1: no push past the script

    def __getattr__(self, name: str) -> Any:  # layers, make_cache: the model's
        return getattr(self.model, name)

    def __call__(self, inputs: mx.array, cache: Any) -> mx.array:
        at = cache[0].offset + 1 - self.start + mx.arange(inputs.shape[1])
        logits: mx.array = self.model(inputs, cache=cache)
        wanted = mx.where(at >= 0, self.script[mx.maximum(at, 0)], -1)
        return logits + self.push * (mx.arange(logits.shape[-1])[None] == wanted[:, None]).astype(logits.dtype)[None]


def edit_call(path: str, old: str) -> str:
    """The Edit call the tool edit turn's answer is pushed to write (hermes dialect)."""
    arguments = {"file_path": path, "old_string": old, "new_string": old.replace(" ", "  ", 1)}
    return "<tool_call>\n" + json.dumps({"name": "Edit", "arguments": arguments}) + "\n</tool_call>"


def word_file(tokenizer: Any, lines: int = 24, per_line: int = 12, seed: int = 0) -> tuple[str, str]:
    """For the crafted model, which says a fixed answer as a bigram: a file of distinct words,
    and the answer, lines 5 to 16 of it quoted with spaces for newlines (so, as an old_string
    copied from a numbered Read, the copy breaks at every line)."""
    words = sorted(
        {w for w in (tokenizer.decode([i]) for i in range(len(tokenizer.vocab))) if w[:1] == " " and w[1:].isalpha()}
    )
    rng = random.Random(seed)
    chosen = rng.sample([w for w in words if len(w) > 4], lines * per_line)
    rows = ["".join(chosen[i * per_line : (i + 1) * per_line]).strip() for i in range(lines)]
    answer = " " + " ".join(rows[4:16])
    if len(set(tokenizer.encode(answer, add_special_tokens=False))) != len(
        tokenizer.encode(answer, add_special_tokens=False)
    ):
        raise SystemExit("the crafted answer repeats a token: a bigram model cannot say it")
    return "\n".join(rows) + "\n", answer


def build_model(path: Path, tokenizer_from: Path, *, hidden: int, layers: int, reply: str | None = None) -> Path:
    """Where the bundled GGUF is not at hand (the lent GPU): a llama of about a real model's
    shape (head dim 128) in bf16, with the tokenizer in `tokenizer_from`; crafted to say `reply`
    as build_tiny_model's crafted model does, else random."""
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    from pensieve_model_support.testing import _scripted_weights

    path.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_from / name).exists():
            (path / name).write_bytes((tokenizer_from / name).read_bytes())
    # The tool edit turn's pushed call is a Hermes one: a ChatML template with tools, whatever
    # the tokenizer's own (Phi-3's offers none), so every turn renders the same way on any.
    (path / "chat_template.jinja").write_text(TOOL_CHATML_TEMPLATE)
    small = json.loads((tokenizer_from / "config.json").read_text())
    heads = max(1, hidden // 128)
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": hidden * 8 // 3,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 4),
        "rms_norm_eps": 1e-5,
        "vocab_size": small["vocab_size"],
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "eos_token_id": small["eos_token_id"],
        "bos_token_id": small.get("bos_token_id"),
    }
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    if reply is not None:
        weights = _scripted_weights(model, load_tokenizer(path), reply, config)
    else:
        weights = dict(tree_flatten(model.parameters()))
    weights = {k: v.astype(mx.bfloat16) for k, v in weights.items()}
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path
