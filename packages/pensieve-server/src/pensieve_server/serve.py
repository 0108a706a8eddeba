"""Run the app on Hypercorn until a signal arrives.

Start-up binds the port before loading the model, and says "serving" only once the socket
listens. Shutdown: new requests get 529 at once, streams still running at shutdown_timeout end
with an error event, and the process is gone by shutdown_timeout + FORCE_EXIT_GRACE_S at the
latest, or at once on a second signal."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import cast

import structlog
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

from pensieve_core import DEFAULT_API_KEY, Settings
from pensieve_core.errors import ConfigError

from .app import create_app
from .hardening import is_loopback
from .http_errors import install_http_errors
from .models import ServedModels
from .startup import apply_limits, open_models

log = structlog.get_logger("pensieve.server")

# Hypercorn waits this much beyond the cut, so that the cut streams' error events go out.
STREAM_CLOSE_GRACE_S = 1.0
# Past shutdown_timeout, closing the models and threads gets this long before a forced exit.
FORCE_EXIT_GRACE_S = 5.0


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None  # our own middleware logs each request with its id
    config.errorlog = None
    # The app cuts its own streams at shutdown_timeout; hypercorn's cancel is only a backstop.
    config.graceful_timeout = settings.shutdown_timeout + STREAM_CLOSE_GRACE_S
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


def bind(settings: Settings) -> Sockets:
    """Bind (not yet listen): a taken port is one clear error before anything says "serving"."""
    try:
        return hypercorn_config(settings).create_sockets()
    except OSError as exc:
        _close_unbound(exc)
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {where}: the port is in use (choose another with --port)") from None
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from None


def _close_unbound(exc: OSError) -> None:
    """Hypercorn leaves the socket it could not bind open (a ResourceWarning when it is collected,
    a leaked descriptor until then): close it, found in the frames the error passed through."""
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next


def _all(sockets: Sockets) -> list[socket.socket]:
    return [*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets]


def _force_exit(reason: str) -> None:
    # The exit must not wait on the log line: a reader that stopped reading blocks the write.
    threading.Timer(1.0, os._exit, args=(1,)).start()
    log.warning("shutdown_forced", reason=reason)
    os._exit(1)


def _handle_signals(stop: asyncio.Event, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            _force_exit("second signal")
        stop.set()  # first: nothing after this line may keep the server from stopping
        watchdog = threading.Timer(timeout_s + FORCE_EXIT_GRACE_S, _force_exit, args=("shutdown timeout",))
        watchdog.daemon = True
        watchdog.start()
        log.info("shutting_down", timeout_s=timeout_s)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def serve_models(
    models: ServedModels,
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    shutdown: asyncio.Event | None = None,
    sockets: Sockets | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, or until `shutdown` is set when one is given."""
    install_http_errors()  # hypercorn's own 400/431/501 answers get our envelope and request id
    try:
        app = create_app(models, settings)
        sockets = sockets or bind(settings)
        stop = shutdown or asyncio.Event()
        if shutdown is None:
            _handle_signals(stop, settings.shutdown_timeout)
        config = hypercorn_config(settings)
        for sock in _all(sockets):
            sock.listen(config.backlog)  # from here clients queue; hypercorn accepts them next

        async def trigger() -> None:
            await stop.wait()
            # New requests get 529 from now on; in-flight ones may finish within shutdown_timeout.
            app.state.lifecycle.drain(settings.shutdown_timeout)

        log.info(
            "serving",
            url=f"{'https' if config.certfile else 'http'}://{settings.host}:{settings.port}",
            models=models.served_ids(),
            context_length=models.main.model.context_length,
        )
        if on_ready:
            on_ready()
        # worker_serve, not hypercorn.asyncio.serve: only it takes sockets bound beforehand.
        await worker_serve(
            # Starlette types its scope as a plain mapping, hypercorn as typed dicts: the same ASGI app.
            wrap_app(cast(ASGIFramework, app), config.wsgi_max_body_size, "asgi"),
            config,
            sockets=sockets,
            shutdown_trigger=trigger,
        )
    finally:
        for sock in _all(sockets) if sockets else []:
            sock.close()
        await models.aclose()


async def run_server(
    settings: Settings, *, on_ready: Callable[[], None] | None = None, on_note: Callable[[str], None] | None = None
) -> None:
    check_exposure(settings)
    sockets = bind(settings)  # before loading: a taken port fails in a second, not after a download
    try:
        models = await open_models(settings)
        await apply_limits(models)
    except BaseException:
        for sock in _all(sockets):
            sock.close()
        raise
    if models.main.model.note and on_note:
        on_note(models.main.model.note)
    await serve_models(models, settings, on_ready=on_ready, sockets=sockets)
