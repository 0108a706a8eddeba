"""The error envelope: {"type":"error","error":{"type","message"},"request_id"}."""

from __future__ import annotations

import msgspec

from pensieve_core.errors import PensieveError

from .events import ErrorDetail

_encoder = msgspec.json.Encoder()


class ErrorEnvelope(msgspec.Struct, tag_field="type", tag="error"):
    error: ErrorDetail
    request_id: str | None = None


def error_envelope(error_type: str, message: str, request_id: str | None = None) -> ErrorEnvelope:
    return ErrorEnvelope(error=ErrorDetail(type=error_type, message=message), request_id=request_id)


def envelope_for(exc: PensieveError, request_id: str | None = None) -> ErrorEnvelope:
    return error_envelope(exc.error_type, exc.message, request_id)


def encode_envelope(envelope: ErrorEnvelope) -> bytes:
    return _encoder.encode(envelope)
