"""Pure ASGI guards for a server on localhost that a web page must not be able to abuse:
Host header (DNS rebinding), Origin (CORS), body size, content type, and draining on shutdown."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pensieve_api_models import COUNT_TOKENS_MAX_BODY_BYTES
from pensieve_core.errors import InvalidRequestError, OverloadedError, PermissionDeniedError, RequestTooLargeError

from .errors import send_error

# Routes with a smaller body cap than max_body_bytes (the limit's reason is beside it).
_ROUTE_MAX_BYTES = {"/v1/messages/count_tokens": COUNT_TOKENS_MAX_BODY_BYTES}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header[: header.find("]") + 1].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


class HostGuardMiddleware:
    """Only loopback names, the bind address and configured hosts may appear in Host: a DNS
    name that rebinds to 127.0.0.1 then cannot reach the API from a web page."""

    def __init__(self, app: ASGIApp, bind_host: str, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}
        if not is_loopback(bind_host) and bind_host not in ("0.0.0.0", "::"):
            self.allowed.add(bind_host.lower())
        self.any_host = "*" in self.allowed

    def accepts(self, header: str | None) -> bool:
        if not header:
            return False
        name = _host_name(header)
        return self.any_host or is_loopback(name) or name in self.allowed or name.strip("[]") in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.accepts(Headers(scope=scope).get("host")):
            await send_error(scope, send, PermissionDeniedError("this Host header is not allowed"))
            return
        await self.app(scope, receive, send)


class OriginGuardMiddleware:
    """Browsers send Origin on cross-origin calls: refuse those not configured, and answer
    allowed ones (and their preflights) with CORS headers."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if origin.rstrip("/").lower() not in self.allowed and "*" not in self.allowed:
            await send_error(scope, send, PermissionDeniedError(f"cross-origin requests from {origin} are not allowed"))
            return
        cors = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
                        (b"access-control-allow-headers", b"*"),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


class BodyGuardMiddleware:
    """POST bodies: JSON only, and at most max_bytes, or the route's own smaller cap (413 before
    reading past the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            wrong = f"content-type must be application/json, got {content_type or 'none'!r}"
            await send_error(scope, send, InvalidRequestError(wrong))
            return
        max_bytes = min(self.max_bytes, _ROUTE_MAX_BYTES.get(scope["path"], self.max_bytes))
        too_large = RequestTooLargeError(f"request body exceeds the {max_bytes}-byte limit")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await send_error(scope, send, too_large)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await send_error(scope, send, too_large)


class BodyTooLarge(Exception):
    pass


class DrainMiddleware:
    """Once shutdown begins, new requests get 529 (SDKs retry it, reaching the next server) while
    in-flight ones finish."""

    def __init__(self, app: ASGIApp, state: object) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and getattr(self.state, "draining", False):
            await send_error(scope, send, OverloadedError("the server is shutting down"))
            return
        await self.app(scope, receive, send)
