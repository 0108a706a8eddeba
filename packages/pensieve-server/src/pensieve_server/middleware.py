"""Pure ASGI middleware (BaseHTTPMiddleware would break contextvars): request ids,
access logs, and the API key."""

from __future__ import annotations

import hmac
import time

import structlog
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pensieve_core.errors import ApiError, AuthenticationError

from .errors import send_error
from .ids import request_id
from .metrics import Metrics, path_label
from .status_page import wants_page

log = structlog.get_logger("pensieve.server")

PUBLIC_PATHS = frozenset({"/health"})


class RequestIdMiddleware:
    """Give every request an id, put it on every response, and log one line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"request-id", rid.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                # The client left while its body was still arriving: routine, not an error.
                log.info("client_disconnected", path=scope["path"])
            except Exception:
                # Anything not mapped by the error handlers: a 500 envelope if nothing was sent yet.
                log.exception("unhandled_error", path=scope["path"])
                if status == 0:
                    await send_error(scope, send_with_id, ApiError("internal server error"))
            finally:
                if self.metrics is not None:
                    self.metrics.request_done(path_label(scope["path"]), status)
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )


def presented_key(headers: Headers) -> str | None:
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class ApiKeyMiddleware:
    """Every route but /health and the status page needs the key, in `x-api-key` or
    `Authorization: Bearer`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    def _accepts(self, headers: Headers) -> bool:
        key = presented_key(headers)
        return key is not None and hmac.compare_digest(key.encode(), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            # Reachability probes (`HEAD /`, `HEAD /api/hello`) carry no data either way.
            or scope["method"] == "HEAD"
            # The status page holds no data: its script asks for the key and sends it itself.
            or wants_page(scope)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._accepts(headers):
            await self.app(scope, receive, send)
            return
        message = (
            "invalid x-api-key"
            if presented_key(headers) is not None
            else "missing API key: send it in the x-api-key header or as Authorization: Bearer"
        )
        await send_error(scope, send, AuthenticationError(message))
