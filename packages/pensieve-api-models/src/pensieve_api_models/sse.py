"""Server-sent events encoding: `event: <type>` then `data: <json with the same type>`."""

from __future__ import annotations

import msgspec

from .events import StreamEvent

_encoder = msgspec.json.Encoder()


def encode_event(event: StreamEvent) -> bytes:
    tag = type(event).__struct_config__.tag
    return b"event: " + str(tag).encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


def keepalive_comment() -> bytes:
    return b": keep-alive\n\n"
