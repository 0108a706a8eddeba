"""The Starlette application."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from pensieve_core import Engine, Settings

from .errors import EXCEPTION_HANDLERS
from .middleware import ApiKeyMiddleware, RequestIdMiddleware
from .routes.health import health, root
from .routes.messages import count_tokens, create_message


def create_app(engine: Engine, settings: Settings) -> Starlette:
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(ApiKeyMiddleware, api_key=settings.api_key),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    app.state.engine = engine
    app.state.settings = settings
    app.state.started_at = time.monotonic()
    return app
