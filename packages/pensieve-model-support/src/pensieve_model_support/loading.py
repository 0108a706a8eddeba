"""Load a resolved model into memory: weights, tokenizer, context length."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, cast

import mlx.nn as nn
import msgspec
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_core.errors import HubUnavailableError, ModelLoadError
from pensieve_metal import avoid_per_shape_attention, check_fits, keep_compiled_kernels

from .gguf import load_gguf
from .gguf.reader import loaded_bytes
from .hub import Hub
from .references import ModelRef

DEFAULT_CONTEXT = 4096


class LoadedModel(msgspec.Struct, kw_only=True):
    name: str
    ref: ModelRef
    model: nn.Module
    tokenizer: TokenizerWrapper
    config: dict[str, Any]
    context_length: int
    # Changes whenever the weights do: keys what is persisted about this model (prefix caches).
    identity: str = ""
    weights_bytes: int = 0
    # Some of its layers hold quantized weights (what CUDA batches slowly, and speculation skips).
    quantized: bool = False


def _context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length"):
        if isinstance(value := config.get(key), int):
            return value
    text = config.get("text_config")
    return _context_length(text) if isinstance(text, dict) else DEFAULT_CONTEXT


def _load_mlx_dir(path: Path) -> tuple[nn.Module, TokenizerWrapper, dict[str, Any]]:
    from mlx_lm.utils import load

    try:
        # trust_remote_code stays off: no model code from a download ever runs.
        loaded = load(str(path), return_config=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, FileNotFoundError) as exc:
        raise ModelLoadError(f"cannot load the MLX model in {path}: {exc}") from exc
    # load's return type covers both forms: return_config=True gives the model, tokenizer and config.
    return cast(tuple[nn.Module, TokenizerWrapper, dict[str, Any]], loaded)


def local_path(ref: ModelRef, hub: Hub, *, download: bool = True) -> Path:
    """Where the model's files are, downloading a hub model if allowed and needed."""
    if ref.kind != "hub":
        return Path(ref.path or "")
    assert ref.repo_id is not None
    cached = hub.cached(ref.repo_id)
    if cached is not None:
        return cached
    if not download:
        raise HubUnavailableError(f"{ref.repo_id} is not in the Hugging Face cache")
    return hub.download(ref.repo_id)


def weight_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.glob("*.safetensors")) + sorted(path.glob("*.gguf"))


def weights_identity(name: str, files: list[Path]) -> str:
    """A short digest of the model's name and its weight files' names, sizes and times."""
    digest = hashlib.sha256(name.encode())
    for f in files:
        stat = f.stat()
        digest.update(f"\0{f.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_model(
    ref: ModelRef,
    hub: Hub,
    *,
    download: bool = True,
    memory_budget_bytes: int | None = None,
    converted_dir: Path | None = None,
    group: Any = None,
    pipeline: bool = False,
    kernels_dir: Path | None = None,
) -> LoadedModel:
    """`converted_dir`: where a GGUF's converted weights are kept for the next start (None: not kept).
    `group`: an mx.distributed group whose ranks each load a shard (tensor parallel, or layers
    in a pipeline), with mlx-lm's sharded_load; every rank of the group calls this together.
    `kernels_dir`: where MLX's CUDA build keeps the kernels it compiles (None: its default)."""
    path = local_path(ref, hub, download=download)
    files = weight_files(path)
    if not files:
        raise ModelLoadError(f"{path} holds no safetensors or GGUF weights")
    avoid_per_shape_attention()  # before the model's first attention: MLX reads it then
    if kernels_dir is not None:
        keep_compiled_kernels(kernels_dir)  # before the weights' first operation compiles a kernel
    if group is not None:
        model, tokenizer, config, weights_bytes = _load_shard(ref, path, group, pipeline=pipeline)
    else:
        weights_bytes = sum(f.stat().st_size for f in files)
        if ref.kind in ("bundled", "gguf_file"):
            # The fit check and memory limits need the size after conversion, not the file's.
            weights_bytes = loaded_bytes(path, converted_dir)
        check_fits(ref.name, weights_bytes, budget_bytes=memory_budget_bytes)
        if ref.kind in ("bundled", "gguf_file"):
            model, tokenizer, config = load_gguf(path, converted_dir)
        else:
            model, tokenizer, config = _load_mlx_dir(path)
    return LoadedModel(
        name=ref.name,
        ref=ref,
        model=model,
        tokenizer=tokenizer,
        config=config,
        context_length=_context_length(config),
        identity=weights_identity(ref.name, files),
        weights_bytes=weights_bytes,
        quantized=any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules()),
    )


def _load_shard(
    ref: ModelRef, path: Path, group: Any, *, pipeline: bool
) -> tuple[nn.Module, TokenizerWrapper, dict[str, Any], int]:
    """This rank's shard, with mlx-lm's sharded_load, and the bytes of weights it holds."""
    from mlx.utils import tree_flatten
    from mlx_lm.utils import sharded_load

    if ref.kind in ("bundled", "gguf_file"):
        raise ModelLoadError(
            f"{ref.name} is a GGUF file: a model sharded across ranks loads from an MLX directory "
            "(serve the one pensieve converted it into, `pensieve cache list --converted`, or one "
            "made with mlx_lm.convert)"
        )
    groups = {"pipeline_group": group} if pipeline else {"tensor_group": group}
    try:
        loaded = sharded_load(str(path), return_config=True, **groups)
    except (ValueError, OSError, KeyError) as exc:
        how = "in a pipeline" if pipeline else "tensor-parallel"
        raise ModelLoadError(f"cannot load {ref.name} {how} across {group.size()} ranks: {exc}") from exc
    model, tokenizer, config = cast(tuple[nn.Module, TokenizerWrapper, dict[str, Any]], loaded)
    # This rank's share of the weights, as loaded (what its memory holds).
    arrays = cast(list[tuple[str, Any]], tree_flatten(model.parameters()))
    return model, tokenizer, config, sum(int(array.nbytes) for _, array in arrays)
