"""Choose and load the models to serve: the configured main model (or the bundled model when
it is neither cached nor downloadable, saying so), and any distinct tier models."""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from pensieve_core import CLAUDE_TIERS, ModelCard, Settings
from pensieve_inference import MLXEngine
from pensieve_metal import AppliedLimits, apply_memory_limits
from pensieve_model_support import Hub, HubUnavailableError, HuggingFaceHub, local_path, resolve_reference

from .models import ServedModels

log = structlog.get_logger("pensieve.startup")


async def _load(reference: str, settings: Settings, hub: Hub, worker=None) -> MLXEngine:
    ref = resolve_reference(reference)
    if ref.kind == "hub":
        # Download (with a progress bar) before loading, so loading never touches the network.
        local_path(ref, hub)
    return await MLXEngine.load(
        ref,
        hub,
        download=False,
        worker=worker,
        max_sequences=settings.max_concurrent_sequences,
        max_output_tokens=settings.max_output_tokens,
        prefix_cache_bytes=settings.prefix_cache_bytes,
        prefix_cache_entries=settings.prefix_cache_entries,
        prefix_cache_dir=settings.prefix_cache_dir,
        prefix_cache_disk_bytes=settings.prefix_cache_disk_bytes,
        converted_dir=settings.converted_dir,
    )


async def open_engine(settings: Settings, hub: Hub | None = None) -> MLXEngine:
    hub = hub or HuggingFaceHub()
    try:
        return await _load(settings.model, settings, hub)
    except HubUnavailableError as exc:
        fallback = resolve_reference(settings.fallback_model)
        note = (
            f"{settings.model} is not cached and could not be downloaded; serving the bundled {fallback.name} instead"
        )
        log.warning("model_fallback", requested=settings.model, served=fallback.name, reason=exc.message)
        engine = await _load(settings.fallback_model, settings, hub)
        card = engine.model
        engine.set_card(
            ModelCard(
                id=card.id,
                source=card.source,
                context_length=card.context_length,
                fallback_from=settings.model,
                note=note,
            )
        )
        return engine


async def apply_limits(models: ServedModels) -> AppliedLimits:
    """MLX memory limits for what is loaded: a cap below device memory, a bounded buffer
    cache, and (on macOS) the weights wired so they are never paged out."""
    weights = sum(e.loaded.weights_bytes for e in models.engines())
    limits = await asyncio.wrap_future(models.main.worker.call(lambda: apply_memory_limits(wire_bytes=weights)))
    log.info("memory_limits", **msgspec.structs.asdict(limits))
    return limits


async def open_models(settings: Settings, hub: Hub | None = None) -> ServedModels:
    hub = hub or HuggingFaceHub()
    main = await open_engine(settings, hub)
    names = {settings.model: main}
    tiers: dict[str, MLXEngine] = {}
    for tier in CLAUDE_TIERS:
        reference = settings.tier_model(tier)
        if reference not in names:
            # Tier models share the main model's worker: all MLX work stays on one thread.
            names[reference] = await _load(reference, settings, hub, worker=main.worker)
        tiers[tier] = names[reference]
    return ServedModels(main, names=names, tiers=tiers, strict=settings.strict_model_names)
