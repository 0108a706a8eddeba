"""The one place where pensieve's error tree becomes HTTP. Every error answer is a tree error
sent with its class's status and type: raised by a route or a guard, named by an engine's
Failed event, or made from Starlette's and h11's own statuses through tables derived from the tree."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from pensieve_api_models import encode_envelope, envelope_for
from pensieve_core import Failed
from pensieve_core.errors import ApiError, InvalidRequestError, OverloadedError, PensieveError


def _tree(root: type[PensieveError] = PensieveError) -> Iterator[type[PensieveError]]:
    """The classes below the root, each parent before its children."""
    for cls in root.__subclasses__():
        yield cls
        yield from _tree(cls)


# The most general class for each status and each type: the first met going down the tree.
_BY_STATUS: dict[int, type[PensieveError]] = {}
_BY_TYPE: dict[str, type[PensieveError]] = {}
for _cls in _tree():
    _BY_STATUS.setdefault(_cls.status, _cls)
    _BY_TYPE.setdefault(_cls.error_type, _cls)


def error_of_failed(event: Failed) -> PensieveError:
    """The tree error a Failed event names: both paths answer with its status and type."""
    return _BY_TYPE.get(event.error_type, ApiError)(event.message)


def error_of_status(status: int, message: str) -> PensieveError:
    """Starlette's and h11's own errors as tree errors. The statuses the tree lacks (405, 431,
    501) are all the client's doing: an invalid_request_error that keeps HTTP's status."""
    if (cls := _BY_STATUS.get(status)) is not None:
        return cls(message)
    exc = InvalidRequestError(message)
    exc.status = status
    return exc


def error_body(exc: PensieveError, request_id: str | None) -> bytes:
    return encode_envelope(envelope_for(exc, request_id))


def error_headers(exc: PensieveError) -> dict[str, str]:
    if isinstance(exc, OverloadedError):
        # SDKs and Claude Code back off by these before retrying.
        return {"retry-after": str(exc.retry_after_s), "retry-after-ms": str(exc.retry_after_s * 1000)}
    return {}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(exc: PensieveError, request_id: str | None) -> Response:
    return Response(
        error_body(exc, request_id), status_code=exc.status, media_type="application/json", headers=error_headers(exc)
    )


async def send_error(scope: Scope, send: Send, exc: PensieveError) -> None:
    """The envelope from pure ASGI middleware, before (or instead of) the app."""
    body = error_body(exc, scope.get("state", {}).get("request_id"))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error_headers(exc).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def handle_pensieve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PensieveError)
    return error_response(exc, request_id_of(request))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.method == "HEAD" and exc.status_code in (404, 405):
        # Clients probe with HEAD (`HEAD /`, `HEAD /api/hello`) before talking: answer them all.
        return Response(status_code=200)
    message = exc.detail if exc.status_code != 404 else f"no such route: {request.method} {request.url.path}"
    return error_response(error_of_status(exc.status_code, str(message)), request_id_of(request))


EXCEPTION_HANDLERS = {PensieveError: handle_pensieve_error, HTTPException: handle_http_exception}
