"""`pensieve pull | models | rm | validate`: models on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pensieve_core import DEFAULT_MODEL, Settings, load_settings
from pensieve_core.errors import ConfigError, HubUnavailableError, ModelLoadError, ModelNotFoundError

from .errors import fail

if TYPE_CHECKING:
    from pensieve_model_support import Hub, LoadedModel, ModelRef


@click.command()
@click.argument("model")
def pull(model: str) -> None:
    """Download MODEL (alias or Hugging Face repo id) into the Hugging Face cache."""
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    with fail():
        ref = resolve_reference(model)
        if ref.kind != "hub":
            click.echo(f"{model} is local ({ref.path}); nothing to pull")
            return
        assert ref.repo_id is not None
        path = HuggingFaceHub().download(ref.repo_id)
        click.echo(f"{ref.repo_id} is in {path}")


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """List models on this machine: bundled, Hugging Face cache, Ollama, LM Studio; which load."""
    from .model_listing import local_models

    with fail():
        entries = local_models()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    click.echo(f"{'NAME':<44} {'SOURCE':<11} {'SIZE':>9} {'FORMAT':<6} {'CONTEXT':>8} {'QUANT':<7} LOADS")
    for e in entries:
        loads = "yes" if e["loads"] else f"no: {e['why_not']}"
        if e["loads"] and e["chat_template"] is False:
            loads = "yes (no chat template: plain role: text prompt)"
        click.echo(
            f"{e['name']:<44} {e['source']:<11} {_human(e['size_bytes']):>9} {e['format']:<6} "
            f"{e['context_length'] or '?':>8} {e['quantization']:<7} {loads}"
        )
        if e["reference"] != e["name"]:
            click.echo(f"  --model {e['reference']}")


@click.command("rm")
@click.argument("model")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm(model: str, yes: bool) -> None:
    """Delete a downloaded model from the Hugging Face cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from pensieve_model_support import hf_cache_dir, resolve_reference

    with fail():
        ref = resolve_reference(model)
        if ref.kind != "hub":
            raise ConfigError(
                f"{model} is not a downloaded model ({ref.kind}); pensieve only removes what it downloaded"
            )
        try:
            cache = scan_cache_dir(hf_cache_dir())
        except CacheNotFound as exc:
            raise ModelNotFoundError(f"{ref.repo_id} is not in the Hugging Face cache") from exc
        repo = {r.repo_id: r for r in cache.repos}.get(ref.repo_id or "")
        if repo is None:
            raise ModelNotFoundError(f"{ref.repo_id} is not in the Hugging Face cache")
        if not yes:
            click.confirm(f"Delete {ref.repo_id} ({_human(repo.size_on_disk)})?", abort=True)
        strategy = cache.delete_revisions(*(r.commit_hash for r in repo.revisions))
        strategy.execute()
        click.echo(f"deleted {ref.repo_id} ({strategy.expected_freed_size_str})")


def _missing_hint(settings: Settings) -> str:
    return (
        f"`pensieve pull {settings.model}` downloads it now; `pensieve start` downloads it when the hub "
        f"is reachable and serves the bundled {settings.fallback_model} when it is not"
    )


def _model_to_check(settings: Settings, hub: Hub, asked: bool) -> tuple[str, ModelRef, Path]:
    """The model `start` would load from what is on this machine. A model the user named
    (flag or config) must be there; the default one may be missing, since `start` then serves
    the bundled fallback: that is checked instead, and validate passes with a note."""
    from pensieve_model_support import local_path, resolve_reference

    ref = resolve_reference(settings.model)
    try:
        return settings.model, ref, local_path(ref, hub, download=False)
    except HubUnavailableError as exc:
        if asked:
            raise HubUnavailableError(f"{exc.message}: {_missing_hint(settings)}") from exc
        click.echo(f"note the default model {settings.model} is not downloaded: {_missing_hint(settings)}")
        click.echo(f"     checking {settings.fallback_model}, which `pensieve start` serves until then")
    fallback = resolve_reference(settings.fallback_model)
    return settings.fallback_model, fallback, local_path(fallback, hub, download=False)


def _kv_lines(loaded: LoadedModel, weights_bytes: int, configured: int | None) -> list[str]:
    """The KV cache's bytes per token at each `kv_bits`, and the context that fits beside the weights."""
    from pensieve_core import KV_BITS
    from pensieve_metal import memory_after_weights
    from pensieve_model_support import kv_layout

    layout = kv_layout(loaded.config, loaded.model)
    if layout is None:
        return ["note the config does not say the KV cache's shape (layers, heads, head dim): no context estimate"]
    free = memory_after_weights(weights_bytes)
    lines = [
        f"ok   KV cache ({layout.layers} layers x {layout.kv_heads} KV heads x {layout.head_dim}); context that fits"
        f" in the {free / 1e9:.1f} GB the weights leave (for every request and the prefix cache together):"
    ]
    for bits in (None, *KV_BITS):
        per_token = layout.bytes_per_token(bits)
        fits = int(free // per_token)
        whole = f" (the model reads {loaded.context_length:,})" if fits >= loaded.context_length else ""
        mark = "  <- configured" if bits == configured else ""
        name = bits or "none"
        lines.append(f"       kv_bits {name:<5} {per_token / 1024:8.1f} KB a token  {fits:>12,} tokens{whole}{mark}")
    if configured is not None and layout.group_size is None:
        lines.append(f"note head dim {layout.head_dim} is not a multiple of 32: kv_bits cannot quantize this model")
    return lines


@click.command()
@click.option("--model", help="Model reference to check (default: the configured model).")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
def validate(model: str | None, home: str | None) -> None:
    """Check config, model files, chat template and memory; exit non-zero on a problem."""
    from pensieve_metal import check_fits, device_info
    from pensieve_model_support import HuggingFaceHub, load_model, summarize_gguf, weight_files

    from .cache_cmd import check_files

    with fail():
        settings = load_settings({"home": home, "model": model})
        click.echo(f"ok   config ({settings.config_path()})")
        for line in check_files(settings.prefix_cache_dir):
            click.echo(line)
        hub = HuggingFaceHub()
        name, ref, path = _model_to_check(settings, hub, asked=model is not None or settings.model != DEFAULT_MODEL)
        files = weight_files(path)
        if not files:
            raise ModelLoadError(f"{path} holds no safetensors or GGUF weights")
        size = sum(f.stat().st_size for f in files)
        click.echo(f"ok   model files: {name} ({size / 1e9:.2f} GB in {path})")
        for gguf in (f for f in files if f.suffix == ".gguf"):  # what the loader would refuse, before loading
            if (summary := summarize_gguf(gguf)).why_not is not None:
                raise ModelLoadError(f"{gguf.name}: {summary.why_not}")
        check_fits(name, size)
        device = device_info()
        click.echo(f"ok   fits memory ({device.recommended_working_set_bytes / 1e9:.1f} GB on {device.kind})")
        loaded = load_model(ref, hub, download=False, converted_dir=settings.converted_dir)
        text = loaded.tokenizer.apply_chat_template(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        if "hi" not in text:
            raise ModelLoadError("the chat template dropped the user's message")
        click.echo(f"ok   chat template renders; context {loaded.context_length} tokens")
        for line in _kv_lines(loaded, size, settings.kv_bits):
            click.echo(line)
        if device.kind == "cuda" and loaded.quantized:
            # Measured on an H200: 4-bit batched decode ~300 tok/s vs ~5,000 in bf16 (docs/performance.md).
            click.echo(
                "note quantized weights on CUDA: MLX's quantized matmul is slow past one sequence, so"
                " for batch-heavy serving (several clients, subagents) a bf16 build of this model"
                " decodes several times faster"
            )
