"""Tiny random-weight models for tests: real files, real loading, real templates.

They use the bundled SmolLM2 tokenizer (built from its GGUF metadata), so text round-trips
like a real model's; only the weights are random.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.utils import _get_classes

from .bundled import bundled_gguf_path
from .gguf.reader import read_gguf
from .gguf.tokenizer import build_tokenizer
from .hub import HubUnavailableError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


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
) -> Path:
    """Write an MLX model directory (config, safetensors, tokenizer) with random weights."""
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(_bundled_tokenizer_metadata())
    tokenizer = build_tokenizer(meta)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(path))

    config = {
        "model_type": "llama",
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "intermediate_size": hidden_size * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "max_position_embeddings": context_length,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
    }
    mx.random.seed(seed)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    # Larger-than-default weights make random logits peaked, so greedy output varies by prompt.
    weights = {k: v * 4 for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


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
