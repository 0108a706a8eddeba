"""What `pensieve models` lists: the bundled model, the Hugging Face cache, Ollama's store and
LM Studio's folder, each with the reference that loads it and whether it loads (and why not).
Only headers are read: GGUF files through the fast header reader, MLX directories' config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pensieve_model_support import OllamaModel


def _mlx_entry(name: str, folder: Path, size: int, source: str, reference: str) -> dict[str, Any]:
    from pensieve_model_support import model_classes

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits")
    why_not = None
    try:
        model_classes(config)
    except (ValueError, ImportError, KeyError) as exc:
        why_not = (
            f"mlx-lm has no model type {config.get('model_type')!r}" if config else f"unreadable config.json ({exc})"
        )
    return {
        "name": name,
        "source": source,
        "reference": reference,
        "size_bytes": size,
        "format": "mlx",
        "context_length": config.get("max_position_embeddings")
        or config.get("text_config", {}).get("max_position_embeddings"),
        "quantization": f"{bits}-bit" if bits else "none",
        "chat_template": None,
        "loads": why_not is None,
        "why_not": why_not,
        "path": str(folder),
    }


def _gguf_entry(name: str, path: Path, source: str, reference: str) -> dict[str, Any]:
    from pensieve_model_support import summarize_gguf

    summary = summarize_gguf(path)
    return {
        "name": name,
        "source": source,
        "reference": reference,
        "size_bytes": path.stat().st_size,
        "format": "gguf",
        "context_length": summary.context_length,
        "quantization": summary.quantization,
        # Without one the prompt is plain "role: text" lines (as for any template-less model).
        "chat_template": summary.has_chat_template,
        "loads": summary.loads,
        "why_not": summary.why_not,
        "path": str(path),
    }


def _ollama_entry(model: OllamaModel) -> dict[str, Any]:
    entry = _gguf_entry(model.name, model.blob, "ollama", f"ollama:{model.name}")
    # Ollama's Go template is never run; its parameters are shown, not applied.
    entry["ollama_template"] = model.template is not None
    entry["ollama_parameters"] = model.parameters
    if model.adapter and entry["loads"]:
        entry["loads"], entry["why_not"] = False, "has a LoRA adapter layer, which pensieve does not apply"
    return entry


def _broken(name: str, source: str, reference: str, why_not: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": source,
        "reference": reference,
        "size_bytes": 0,
        "format": "gguf",
        "context_length": None,
        "quantization": "?",
        "chat_template": None,
        "loads": False,
        "why_not": why_not,
        "path": None,
    }


def _hf_entries() -> list[dict[str, Any]]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from pensieve_model_support import hf_cache_dir

    try:
        repos = scan_cache_dir(hf_cache_dir()).repos
    except CacheNotFound:
        return []
    entries = []
    for repo in sorted(repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            snapshot = revision.snapshot_path
            if (snapshot / "config.json").exists():
                entries.append(_mlx_entry(repo.repo_id, snapshot, repo.size_on_disk, "huggingface", repo.repo_id))
                break
            # A GGUF repo loads by its file's path (a repo id names an MLX model).
            ggufs = sorted(snapshot.glob("*.gguf"))
            entries += [_gguf_entry(f"{repo.repo_id}/{f.name}", f, "huggingface", str(f)) for f in ggufs]
            if ggufs:
                break
    return entries


def local_models() -> list[dict[str, Any]]:
    from pensieve_model_support import BUNDLED_ALIAS, bundled_gguf_path, lmstudio_models, ollama_models

    entries = [_gguf_entry(BUNDLED_ALIAS, bundled_gguf_path(), "bundled", BUNDLED_ALIAS)]
    entries += _hf_entries()
    for name, found in ollama_models():
        if isinstance(found, Exception):
            entries.append(_broken(name, "ollama", f"ollama:{name}", str(found)))
        else:
            entries.append(_ollama_entry(found))
    for name, path in lmstudio_models():
        reference = f"lmstudio:{name}"
        if path.is_dir():
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            entries.append(_mlx_entry(name, path, size, "lmstudio", reference))
        else:
            entries.append(_gguf_entry(name, path, "lmstudio", reference))
    return entries
