"""Run the app on Hypercorn until a signal arrives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from pensieve_core import Settings

from .app import create_app
from .models import ServedModels
from .startup import open_models

log = structlog.get_logger("pensieve.server")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None  # our own middleware logs each request with its id
    config.errorlog = None
    config.graceful_timeout = 30.0
    return config


async def serve_models(
    models: ServedModels,
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    shutdown: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, or until `shutdown` is set when one is given."""
    app = create_app(models, settings)
    stop = shutdown or asyncio.Event()
    if shutdown is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config(settings)
    log.info(
        "serving",
        url=f"http://{settings.host}:{settings.port}",
        models=models.served_ids(),
        context_length=models.main.model.context_length,
    )
    if on_ready:
        on_ready()
    try:
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        await models.aclose()


async def run_server(
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> None:
    models = await open_models(settings)
    if models.main.model.note and on_note:
        on_note(models.main.model.note)
    await serve_models(models, settings, on_ready=on_ready)
