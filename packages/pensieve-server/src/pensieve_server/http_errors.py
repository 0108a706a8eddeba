"""Errors Hypercorn's HTTP/1.1 layer answers itself (a malformed request line or Content-Length,
headers past its size limit, an unsupported Transfer-Encoding) get our envelope and a request
id, as every other answer does; Hypercorn sends them with an empty body."""

from __future__ import annotations

from itertools import chain

import h11
import hypercorn.protocol
import structlog
from hypercorn.protocol.h11 import H11Protocol

from .errors import error_body, error_of_status
from .ids import request_id

log = structlog.get_logger("pensieve.server")

# Fixed wording: h11's own messages may quote the client's bytes.
_MESSAGES = {
    400: "malformed HTTP request (request line, headers or Content-Length)",
    413: "request too large",
    431: "request headers too large",
    501: "unsupported HTTP feature (Transfer-Encoding)",
}


class EnvelopeH11Protocol(H11Protocol):
    async def _send_error_response(self, status_code: int) -> None:
        rid = request_id()
        exc = error_of_status(status_code, _MESSAGES.get(status_code, "bad HTTP request"))
        body = error_body(exc, rid)
        log.info("http_protocol_error", status=status_code, request_id=rid)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"request-id", rid.encode()),
        ]
        response = h11.Response(
            status_code=exc.status, headers=list(chain(headers, self.config.response_headers("h11")))
        )
        await self._send_h11_event(response)
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def install_http_errors() -> None:
    """Make Hypercorn build its HTTP/1.1 connections with EnvelopeH11Protocol; idempotent."""
    # Monkeypatch: ProtocolWrapper looks the name up here, where hypercorn imports it without re-export.
    hypercorn.protocol.H11Protocol = EnvelopeH11Protocol  # type: ignore[attr-defined]
