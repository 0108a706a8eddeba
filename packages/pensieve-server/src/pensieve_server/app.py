"""The Starlette application."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from pensieve_core import Engine, Settings

from .errors import EXCEPTION_HANDLERS
from .middleware import ApiKeyMiddleware, RequestIdMiddleware
from .models import ServedModels
from .routes.health import health, root
from .routes.messages import count_tokens, create_message
from .routes.models import get_model, list_models

def create_app(models: ServedModels | Engine, settings: Settings) -> Starlette:
    if not isinstance(models, ServedModels):
        models = ServedModels(models, strict=settings.strict_model_names)
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(ApiKeyMiddleware, api_key=settings.api_key),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    app.state.models = models
    app.state.settings = settings
    app.state.keepalive_seconds = settings.keepalive_seconds
    app.state.started_at = time.monotonic()
    app.state.started_wall = time.time()
    return app
