"""Tiny random-weight models for tests: real files, real loading, real templates.

They use the bundled SmolLM2 tokenizer (built from its GGUF metadata), so text round-trips
like a real model's; only the weights are random.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten

from pensieve_core.errors import HubUnavailableError

from .bundled import bundled_gguf_path
from .gguf.reader import read_gguf
from .gguf.tokenizer import build_tokenizer
from .mlx_lm_internals import model_classes

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _chatml_with_tools(instructions: str, tool_result: str, calls: str) -> str:
    """ChatML turns with the tools listed in the system turn, then `instructions`; a tool turn's
    content rendered by `tool_result`, an assistant turn's tool_calls by `calls`."""
    return (
        "{% if tools %}<|im_start|>system\n"
        "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
        "# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n"
        + instructions
        + "<|im_end|>\n"
        "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
        "{% endif %}"
        "{% for message in messages %}"
        "{% if message.role == 'system' %}"
        "{% elif message.role == 'tool' %}<|im_start|>user\n" + tool_result + "<|im_end|>\n"
        "{% elif message.tool_calls %}<|im_start|>assistant\n{{ message.content }}" + calls + "<|im_end|>\n"
        "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


_TOOL_RESPONSE = "<tool_response>\n{{ message.content }}\n</tool_response>"

# Qwen2.5-style: tools in the system turn, calls as JSON in <tool_call> tags (which mlx-lm
# recognises as its json_tools dialect), results in <tool_response> user turns.
TOOL_CHATML_TEMPLATE = _chatml_with_tools(
    "For each function call, return a json object within <tool_call></tool_call> tags.",
    _TOOL_RESPONSE,
    "{% for tool_call in message.tool_calls %}{% set tool_call = tool_call.function %}"
    '<tool_call>\n{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}",
)
TOOL_TOKENS = ["<tool_call>", "</tool_call>"]

# Qwen3-Coder-style: calls as <function=...> with one <parameter=...> per argument.
QWEN3_CODER_TEMPLATE = _chatml_with_tools(
    "To call a function, reply with:\n<tool_call>\n<function=example_function>\n"
    "<parameter=example_parameter>\nvalue\n</parameter>\n</function>\n</tool_call>",
    _TOOL_RESPONSE,
    "{% for tool_call in message.tool_calls %}<tool_call>\n<function={{ tool_call.function.name }}>\n"
    "{% for key, value in tool_call.function.arguments.items() %}<parameter={{ key }}>\n{{ value }}\n</parameter>\n"
    "{% endfor %}</function>\n</tool_call>{% endfor %}",
)

# Llama 3.2-style pythonic calls: the answer itself is a list of calls, described the way those
# templates do ("[func_name1(params_name1=params_value1, ...)]").
PYTHONIC_TEMPLATE = _chatml_with_tools(
    "To call functions, answer only with [func_name1(params_name1=params_value1), func_name2(params)].",
    "{{ message.content }}",
    "[{% for tool_call in message.tool_calls %}{{ tool_call.function.name }}("
    "{% for key, value in tool_call.function.arguments.items() %}{{ key }}={{ value | tojson }}"
    "{% if not loop.last %}, {% endif %}{% endfor %}){% if not loop.last %}, {% endif %}{% endfor %}]",
)

# A reasoning template: the assistant turn opens with <think> (as DeepSeek-R1 distills do), and
# `enable_thinking=False` renders it closed and empty instead (as Qwen3's template does).
THINK_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
THINK_TOKENS = ["<think>", "</think>"]


@functools.lru_cache(maxsize=1)
def _bundled_tokenizer_metadata() -> dict[str, Any]:
    meta = read_gguf(bundled_gguf_path()).metadata
    return {k: v for k, v in meta.items() if k.startswith("tokenizer.")}


def build_tiny_model(
    path: Path,
    *,
    context_length: int = 4096,
    hidden_size: int = 64,
    num_layers: int = 2,
    chat_template: str | None = CHATML_TEMPLATE,
    seed: int = 0,
    reply: str | None = None,
    reply_ids: list[int] | None = None,
    tool_tokens: bool = False,
    think_tokens: bool = False,
    model_type: str = "llama",
) -> Path:
    """Write an MLX model directory (config, safetensors, tokenizer) with random weights.

    With `reply`, the weights are crafted instead: a bigram model that, after the newline
    that opens the assistant turn, says `reply` and ends its turn (the reply's tokens must
    repeat with a different successor). Real loading, templating and generation; a predictable,
    finite answer. `reply_ids` spells the reply in these tokens instead (one a fresh encoding of
    its text would not give, as a sampling model may). `tool_tokens` adds <tool_call> and
    </tool_call> as special tokens, as Qwen2.5's tokenizer has them; `think_tokens` adds <think>
    and </think> (with a reasoning template, a thinking model). `model_type` "qwen2" gives a
    model mlx-lm can also split in a pipeline (with the weight index its sharded load reads).
    """
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(_bundled_tokenizer_metadata())
    tokenizer = build_tokenizer(meta)
    tokenizer.chat_template = chat_template
    extra = (TOOL_TOKENS if tool_tokens else []) + (THINK_TOKENS if think_tokens else [])
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.save_pretrained(str(path))

    config = {
        "model_type": model_type,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "intermediate_size": hidden_size * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": context_length,
        "rope_theta": 10000.0,
        "tie_word_embeddings": reply is None and reply_ids is None,
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
    }
    mx.random.seed(seed)
    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    if reply is None and reply_ids is None:
        # Larger-than-default weights make random logits peaked, so greedy output varies by prompt.
        weights = {k: v * 4 for k, v in _parameters(model)}
    else:
        weights = _scripted_weights(model, tokenizer, reply or "", config, reply_ids)
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    index = {"metadata": {}, "weight_map": dict.fromkeys(weights, "model.safetensors")}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def _parameters(model: Any) -> list[tuple[str, mx.array]]:
    # tree_flatten returns a list of (dotted name, array) unless it is given a dict to fill.
    return cast(list[tuple[str, mx.array]], tree_flatten(model.parameters()))


class FakeHub:
    """TEST DOUBLE for the Hugging Face hub, which test machines cannot reach.

    It serves repositories from local model directories, copying them into its own cache on
    download, and can pretend to be unreachable.
    """

    def __init__(self, cache: Path, repos: dict[str, Path] | None = None, reachable: bool = True):
        self.cache = cache
        self.repos = repos or {}
        self.reachable = reachable
        self.downloads: list[str] = []

    def _snapshot(self, repo_id: str) -> Path:
        return self.cache / repo_id.replace("/", "--")

    def cached(self, repo_id: str) -> Path | None:
        path = self._snapshot(repo_id)
        return path if path.exists() else None

    def download(self, repo_id: str) -> Path:
        if not self.reachable:
            raise HubUnavailableError(f"cannot download {repo_id} from the Hugging Face hub (offline)")
        if repo_id not in self.repos:
            raise HubUnavailableError(f"{repo_id} does not exist on the hub")
        self.downloads.append(repo_id)
        shutil.copytree(self.repos[repo_id], self._snapshot(repo_id))
        return self._snapshot(repo_id)


def _scripted_weights(
    model: Any, tokenizer: Any, reply: str, config: dict[str, Any], reply_ids: list[int] | None = None
) -> dict[str, mx.array]:
    """Embeddings = a shared direction u + per-token noise; attention and MLP outputs ~0, so the
    last hidden state is the current token's embedding. lm_head maps each chain token's noise
    onto its successor (logit ≈ 3 |noise|²) and u onto end-of-turn (≈ |u|² = 1.5 dim), so chain
    tokens continue the reply and every other token ends the turn."""
    dim, vocab = config["hidden_size"], config["vocab_size"]
    spelled = reply_ids if reply_ids is not None else tokenizer.encode(reply, add_special_tokens=False)
    chain = tokenizer.encode("\n", add_special_tokens=False) + list(spelled)
    successors: dict[int, int] = {}
    for current, following in itertools.pairwise(chain):
        if successors.setdefault(current, following) != following:
            raise ValueError(f"reply {reply!r}: token {current} has two successors; a bigram cannot say it")
    weights = {k: v * 0.001 for k, v in _parameters(model)}
    for name in weights:
        if name.endswith("norm.weight"):
            weights[name] = mx.ones((dim,))
    u = mx.random.normal((dim,))
    u = u / mx.linalg.norm(u) * (1.5 * dim) ** 0.5
    noise = mx.random.normal((vocab, dim))
    noise = noise - (noise @ u)[:, None] * u[None, :] / (u @ u)
    weights["model.embed_tokens.weight"] = noise + u[None, :]
    head = mx.zeros((vocab, dim))
    head[config["eos_token_id"]] = u
    for current, following in successors.items():
        head[following] = head[following] + noise[current] * 3
    weights["lm_head.weight"] = head
    return weights
