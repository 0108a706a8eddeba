"""Choose and load the models to serve: the configured main model (or the bundled model when
it is neither cached nor downloadable, saying so), and any distinct tier models."""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from pensieve_core import CLAUDE_TIERS, Engine, Settings
from pensieve_core.errors import ConfigError, PensieveError
from pensieve_inference import EngineOptions, GenerationWorker, MLXEngine, load_draft
from pensieve_model_support import Hub, HubUnavailableError, HuggingFaceHub, local_path, resolve_reference

from .models import ServedModels
from .ranks import RankGroup

log = structlog.get_logger("pensieve.startup")


async def _load(
    reference: str,
    hub: Hub,
    options: EngineOptions,
    *,
    worker: GenerationWorker | None = None,
    fallback_from: str | None = None,
    note: str | None = None,
) -> MLXEngine:
    ref = resolve_reference(reference)
    if ref.kind == "hub":
        # Download (with a progress bar) before loading, so loading never touches the network.
        local_path(ref, hub)
    return await MLXEngine.load(
        ref, hub, options, download=False, worker=worker, fallback_from=fallback_from, note=note
    )


async def open_engine(settings: Settings, hub: Hub | None = None, options: EngineOptions | None = None) -> MLXEngine:
    hub = hub or HuggingFaceHub()
    options = options or EngineOptions.of(settings)
    try:
        return await _load(settings.model, hub, options)
    except HubUnavailableError as exc:
        fallback = resolve_reference(settings.fallback_model)
        note = (
            f"{settings.model} is not cached and could not be downloaded; serving the bundled {fallback.name} instead"
        )
        log.warning("model_fallback", requested=settings.model, served=fallback.name, reason=exc.message)
        return await _load(settings.fallback_model, hub, options, fallback_from=settings.model, note=note)


async def apply_limits(models: ServedModels) -> msgspec.Struct:
    """MLX memory limits for what is loaded: a cap below device memory, a bounded buffer
    cache, and (on macOS) the weights wired so they are never paged out."""
    weights = sum(e.weights_bytes for e in models.engines())
    limits = await models.main.limit_memory(wire_bytes=weights)
    log.info("memory_limits", **msgspec.structs.asdict(limits))
    return limits


async def open_group(settings: Settings, hub: Hub) -> ServedModels:
    """The main model sharded across the hostfile's ranks; this process is rank 0. No tier
    models, fallback or draft model: every rank holds a shard of the one model."""
    group = RankGroup(settings)
    try:
        lockstep = await asyncio.to_thread(group.start)
        ref = resolve_reference(settings.model)
        options = EngineOptions.of(settings)
        main = await MLXEngine.load(ref, hub, options, download=False, lockstep=lockstep, pipeline=settings.pipeline)
    except Exception as exc:
        await asyncio.sleep(0.5)  # a rank that failed to load: let its exit show
        problem = group.problem()
        group.kill_followers()
        if problem is not None and not isinstance(exc, PensieveError):  # the lost peer is its symptom
            raise ConfigError(f"{problem} ({exc})") from exc
        raise
    except BaseException:
        group.kill_followers()
        raise
    group.ranks = lockstep.ranks
    group.lost = lambda: main.worker.group_lost
    log.info("ranks_ready", ranks=[msgspec.structs.asdict(r) for r in lockstep.ranks])
    return ServedModels(main, strict=settings.strict_model_names, ranks=group)


async def open_models(settings: Settings, hub: Hub | None = None) -> ServedModels:
    hub = hub or HuggingFaceHub()
    if settings.hostfile is not None:
        return await open_group(settings, hub)
    options = EngineOptions.of(settings)
    main = await open_engine(settings, hub, options)
    if options.speculative == "draft" and options.draft_model is not None:
        # It drafts for the main model only (tier models decode plainly); downloaded first, as above.
        local_path(resolve_reference(options.draft_model), hub)
        main.speculation = await load_draft(
            main.loaded, options.draft_model, hub, main.worker, download=False, converted_dir=options.converted_dir
        )
    names: dict[str, Engine] = {settings.model: main}
    tiers: dict[str, Engine] = {}
    for tier in CLAUDE_TIERS:
        reference = settings.tier_model(tier)
        if reference not in names:
            # Tier models share the main model's worker: all MLX work stays on one thread.
            names[reference] = await _load(reference, hub, options, worker=main.worker)
        tiers[tier] = names[reference]
    return ServedModels(main, names=names, tiers=tiers, strict=settings.strict_model_names)
