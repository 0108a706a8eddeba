"""The one place where pensieve's error tree becomes HTTP."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from pensieve_api_models import encode_envelope, envelope_for, error_envelope
from pensieve_core.errors import OverloadedError, PensieveError

_HTTP_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(status: int, error_type: str, message: str, request_id: str | None) -> Response:
    body = encode_envelope(error_envelope(error_type, message, request_id))
    return Response(body, status_code=status, media_type="application/json")


def pensieve_error_response(exc: PensieveError, request_id: str | None) -> Response:
    headers = {}
    if isinstance(exc, OverloadedError):
        # SDKs and Claude Code back off by these before retrying.
        headers = {"retry-after": str(exc.retry_after_s), "retry-after-ms": str(exc.retry_after_s * 1000)}
    return Response(
        encode_envelope(envelope_for(exc, request_id)),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


async def handle_pensieve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PensieveError)
    return pensieve_error_response(exc, request_id_of(request))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.method == "HEAD" and exc.status_code in (404, 405):
        # Clients probe with HEAD (`HEAD /`, `HEAD /api/hello`) before talking: answer them all.
        return Response(status_code=200)
    error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "api_error")
    message = exc.detail if exc.status_code != 404 else f"no such route: {request.method} {request.url.path}"
    return error_response(exc.status_code, error_type, str(message), request_id_of(request))


EXCEPTION_HANDLERS = {
    PensieveError: handle_pensieve_error,
    HTTPException: handle_http_exception,
}


async def send_error(scope: Scope, send: Send, status: int, error_type: str, message: str) -> None:
    """The envelope from pure ASGI middleware, before (or instead of) the app."""
    rid = scope.get("state", {}).get("request_id")
    body = encode_envelope(error_envelope(error_type, message, rid))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
