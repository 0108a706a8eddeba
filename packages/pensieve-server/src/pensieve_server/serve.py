"""Run the app on Hypercorn until a signal arrives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from pensieve_core import Engine, Settings

from .app import create_app
from .startup import open_engine

log = structlog.get_logger("pensieve.server")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None  # our own middleware logs each request with its id
    config.errorlog = None
    config.graceful_timeout = 30.0
    return config


async def serve_engine(
    engine: Engine,
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    shutdown: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, or until `shutdown` is set when one is given."""
    app = create_app(engine, settings)
    stop = shutdown or asyncio.Event()
    if shutdown is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config(settings)
    log.info(
        "serving",
        url=f"http://{settings.host}:{settings.port}",
        model=engine.model.id,
        context_length=engine.model.context_length,
    )
    if on_ready:
        on_ready()
    try:
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        await engine.aclose()


async def run_server(
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> None:
    engine = await open_engine(settings)
    if engine.model.note and on_note:
        on_note(engine.model.note)
    await serve_engine(engine, settings, on_ready=on_ready)
