"""The Starlette application."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from pensieve_core import Engine, Settings
from pensieve_metal import memory_snapshot

from .errors import EXCEPTION_HANDLERS
from .hardening import BodyGuardMiddleware, DrainMiddleware, HostGuardMiddleware, OriginGuardMiddleware
from .metrics import Metrics
from .middleware import ApiKeyMiddleware, RequestIdMiddleware
from .models import ServedModels
from .routes.health import health, metrics_endpoint, root
from .routes.messages import count_tokens, create_message
from .routes.models import get_model, list_models
from .routes.status import status
from .shared_runs import SharedRuns
from .signatures import ThinkingSigner


class Lifecycle:
    """Shutdown as the app sees it: once `draining`, new requests get 529; when the shutdown
    timeout passes, the streams still running are cut (they end with an error event)."""

    def __init__(self) -> None:
        self.draining = False
        self.cut = False
        self._waiters: set[asyncio.Future[None]] = set()

    def drain(self, timeout_s: float) -> None:
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().call_later(timeout_s, self._cut)

    def until_cut(self) -> asyncio.Future[None]:
        """Done once streams are cut; the caller cancels it when it stops waiting. Futures, not
        one asyncio.Event: an app may outlive its event loop (a TestClient per test)."""
        waiter = asyncio.get_running_loop().create_future()
        if self.cut:
            waiter.set_result(None)
        else:
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)
        return waiter

    def _cut(self) -> None:
        self.cut = True
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)


def create_app(models: ServedModels | Engine, settings: Settings) -> Starlette:
    if not isinstance(models, ServedModels):
        models = ServedModels(models, strict=settings.strict_model_names)
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    ]
    state = Lifecycle()
    metrics = Metrics()
    metrics.gauge("pensieve_memory_active_bytes", "Device memory in use.", lambda: memory_snapshot().active_bytes)
    metrics.gauge(
        "pensieve_memory_peak_bytes", "Most device memory in use so far.", lambda: memory_snapshot().peak_bytes
    )
    engines = models.engines()
    metrics.gauge(
        "pensieve_active_generations", "Generations in the batch.", lambda: sum(e.active_generations for e in engines)
    )
    middleware = [
        Middleware(RequestIdMiddleware, metrics=metrics),
        Middleware(HostGuardMiddleware, bind_host=settings.host, allowed=settings.allowed_hosts),
        Middleware(OriginGuardMiddleware, allowed=settings.allowed_origins),
        Middleware(DrainMiddleware, state=state),
        Middleware(ApiKeyMiddleware, api_key=settings.api_key),
        Middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    app.state.lifecycle = state
    app.state.metrics = metrics
    app.state.models = models
    app.state.settings = settings
    app.state.runs = SharedRuns()
    app.state.signer = ThinkingSigner(home=settings.home_path)
    app.state.keepalive_seconds = settings.keepalive_seconds
    app.state.started_at = time.monotonic()
    app.state.started_wall = time.time()
    return app
