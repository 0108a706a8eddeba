"""Choose and load the model to serve: the configured one, or the bundled model when the
configured one is neither cached nor downloadable (and say so)."""

from __future__ import annotations

import structlog

from pensieve_core import ModelCard, Settings
from pensieve_inference import MLXEngine
from pensieve_model_support import (
    Hub,
    HubUnavailableError,
    HuggingFaceHub,
    ModelRef,
    resolve_reference,
)
from pensieve_model_support.loading import local_path

log = structlog.get_logger("pensieve.startup")


def _card(ref: ModelRef, context_length: int, fallback_from: str | None = None, note: str | None = None) -> ModelCard:
    return ModelCard(
        id=ref.name, source=ref.kind, context_length=context_length, fallback_from=fallback_from, note=note
    )


async def open_engine(settings: Settings, hub: Hub | None = None) -> MLXEngine:
    hub = hub or HuggingFaceHub()
    ref = resolve_reference(settings.model)
    try:
        if ref.kind == "hub":
            # Downloads (with a progress bar) before loading, so loading never touches the network.
            local_path(ref, hub)
        engine = await MLXEngine.load(ref, hub, download=False)
        return engine
    except HubUnavailableError as exc:
        fallback = resolve_reference(settings.fallback_model)
        note = (
            f"{settings.model} is not cached and could not be downloaded; "
            f"serving the bundled {fallback.name} instead"
        )
        log.warning("model_fallback", requested=settings.model, served=fallback.name, reason=exc.message)
        engine = await MLXEngine.load(fallback, hub, download=False)
        engine.set_card(
            _card(fallback, engine.loaded.context_length, fallback_from=settings.model, note=note)
        )
        return engine

