"""Resolve a model reference: an alias, a Hugging Face repo id, a local MLX directory,
a local GGUF file, or a model in Ollama's store or LM Studio's folder (`ollama:`, `lmstudio:`).
References come from the user's config and flags at start, never from a request."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from pensieve_core.errors import ModelNotFoundError

from .bundled import BUNDLED_ALIAS, bundled_gguf_path
from .local_stores import gguf_link, lmstudio_model, ollama_model

SourceKind = Literal["bundled", "hub", "mlx_dir", "gguf_file"]
StoreKind = Literal["ollama", "lmstudio"]
STORE_PREFIXES = ("ollama:", "lmstudio:")

ALIASES: dict[str, str] = {"phi-3-mini": "mlx-community/Phi-3-mini-128k-instruct-4bit", BUNDLED_ALIAS: BUNDLED_ALIAS}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelRef(msgspec.Struct, kw_only=True):
    """A resolved reference: where the model lives and what to call it."""

    name: str
    kind: SourceKind
    repo_id: str | None = None
    path: str | None = None
    # Set when the file was found through another tool's store (the kind says how it loads).
    store: StoreKind | None = None


def looks_like_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and ".." not in ref


def resolve_reference(ref: str) -> ModelRef:
    """Classify `ref` without touching the network; local paths must exist."""
    if ref.startswith(STORE_PREFIXES):
        return _store_reference(ref)
    target = ALIASES.get(ref, ref)
    if target == BUNDLED_ALIAS:
        return ModelRef(name=BUNDLED_ALIAS, kind="bundled", path=str(bundled_gguf_path()))
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(name=path.stem, kind="gguf_file", path=str(path.resolve()))
    if path.is_dir() and (path / "config.json").is_file():
        return ModelRef(name=path.name, kind="mlx_dir", path=str(path.resolve()))
    named_a_path = path.is_absolute() or target.startswith((".", "~")) or path.suffix == ".gguf"
    if named_a_path and not path.exists():
        raise ModelNotFoundError(f"no such file or directory: {ref}")
    if named_a_path or path.exists():
        raise ModelNotFoundError(f"{ref!r} is neither a GGUF file nor an MLX model directory (one with config.json)")
    if looks_like_repo_id(target):
        return ModelRef(name=ref, kind="hub", repo_id=target)
    raise ModelNotFoundError(
        f"unknown model {ref!r}: use an alias ({', '.join(ALIASES)}), a Hugging Face repo id "
        "(owner/name), an MLX model directory, a .gguf file, ollama:<name[:tag]> or lmstudio:<publisher/repo>"
    )


def _store_reference(ref: str) -> ModelRef:
    store, _, name = ref.partition(":")
    if store == "ollama":
        model = ollama_model(name)
        return ModelRef(name=model.name, kind="gguf_file", path=str(gguf_link(model.blob)), store="ollama")
    path = lmstudio_model(name)
    kind: SourceKind = "mlx_dir" if path.is_dir() else "gguf_file"
    return ModelRef(name=name, kind=kind, path=str(path), store="lmstudio")
