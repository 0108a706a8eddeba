"""Server-sent events encoding: `event: <type>` then `data: <json with the same type>`."""

from __future__ import annotations

import msgspec

from .events import StreamEvent

_encoder = msgspec.json.Encoder()
# "event: <type>\ndata: " per event class: built once, as every token of a stream needs it.
_heads: dict[type, bytes] = {}


def encode_event(event: StreamEvent) -> bytes:
    cls = type(event)
    head = _heads.get(cls)
    if head is None:
        head = _heads[cls] = b"event: " + str(cls.__struct_config__.tag).encode() + b"\ndata: "
    return head + _encoder.encode(event) + b"\n\n"


def keepalive_comment() -> bytes:
    return b": keep-alive\n\n"
