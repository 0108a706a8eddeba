"""Run the app on Hypercorn until a signal arrives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from pensieve_core import DEFAULT_API_KEY, Settings
from pensieve_core.errors import ConfigError

from .app import create_app
from .hardening import is_loopback
from .models import ServedModels
from .startup import apply_limits, open_models

log = structlog.get_logger("pensieve.server")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None  # our own middleware logs each request with its id
    config.errorlog = None
    config.graceful_timeout = settings.shutdown_timeout
    if settings.certfile and settings.keyfile:
        config.certfile, config.keyfile = settings.certfile, settings.keyfile
    return config


def check_exposure(settings: Settings) -> None:
    """The well-known default key is fine on loopback, never on an address others can reach."""
    if not is_loopback(settings.host) and settings.api_key == DEFAULT_API_KEY:
        raise ConfigError(
            f"refusing to listen on {settings.host} with the default API key: "
            "set api_key (PENSIEVE_API_KEY or --api-key) first"
        )


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

    def begin_shutdown() -> None:
        # New requests get 503 from now on; in-flight ones may finish within shutdown_timeout.
        app.state.lifecycle.draining = True
        log.info("shutting_down", timeout_s=settings.shutdown_timeout)
        stop.set()

    if shutdown is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, begin_shutdown)
    config = hypercorn_config(settings)
    scheme = "https" if config.certfile else "http"
    log.info(
        "serving",
        url=f"{scheme}://{settings.host}:{settings.port}",
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
    check_exposure(settings)
    models = await open_models(settings)
    await apply_limits(models)
    if models.main.model.note and on_note:
        on_note(models.main.model.note)
    await serve_models(models, settings, on_ready=on_ready)
