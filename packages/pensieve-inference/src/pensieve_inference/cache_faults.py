"""Ways a prefix-cache file goes bad, for tests: each corruption turns a good file's bytes
into a bad file's. The unit tests, the CLI tests and the live-server fault suite share them."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

Corruption = Callable[[bytes], bytes]


def _split(good: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack("<Q", good[:8])
    return json.loads(good[8 : 8 + length]), good[8 + length :]


def _with_header(edit: Callable[[dict[str, Any]], Any]) -> Corruption:
    """A corruption that rewrites the header JSON (and its length, so only the edit is wrong)."""

    def corrupt(good: bytes) -> bytes:
        header, data = _split(good)
        raw = json.dumps(edit(header)).encode()
        return struct.pack("<Q", len(raw)) + raw + data

    return corrupt


def _length(n: int) -> Corruption:
    return lambda good: struct.pack("<Q", n) + good[8:]


def _meta(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(header: dict[str, Any]) -> dict[str, Any]:
        header["__metadata__"][key] = value
        return header

    return edit


def _last_token_changed(header: dict[str, Any]) -> dict[str, Any]:
    tokens = json.loads(header["__metadata__"]["0.pensieve_tokens"])
    tokens[-1] += 1
    header["__metadata__"]["0.pensieve_tokens"] = json.dumps(tokens)
    return header


def _shape_swapped(header: dict[str, Any]) -> dict[str, Any]:
    # Heads and head size swapped: the same byte count, a wrong layout.
    shape = header["0.0"]["shape"]
    shape[1], shape[3] = shape[3], shape[1]
    return header


def _no_digest(header: dict[str, Any]) -> dict[str, Any]:
    header["__metadata__"].pop("0.pensieve_digest", None)
    return header


def _flipped_tensor_bytes(good: bytes, count: int = 2000) -> bytes:
    """`count` bytes flipped, spread over the largest tensor (keys or values, not the offset)."""
    header, _ = _split(good)
    start = 8 + struct.unpack("<Q", good[:8])[0]
    spans = [info["data_offsets"] for name, info in header.items() if name != "__metadata__"]
    begin, end = max(spans, key=lambda s: s[1] - s[0])
    out = bytearray(good)
    step = max(1, (end - begin) // count)
    for i in range(begin, min(end, begin + step * count), step):
        out[start + i] ^= 0xFF
    return bytes(out)


CORRUPTIONS: dict[str, Corruption] = {
    "header_length_2_40": _length(1 << 40),
    "header_length_2_63": _length(1 << 63),
    "header_length_2_64_minus_1": _length((1 << 64) - 1),
    "header_json_is_a_list": _with_header(lambda header: [header]),
    "metadata_is_a_list": _with_header(lambda header: {**header, "__metadata__": [header["__metadata__"]]}),
    "token_list_is_an_int": _with_header(_meta("0.pensieve_tokens", "5")),
    "token_list_nested_5000_deep": _with_header(_meta("0.pensieve_tokens", "[" * 5000 + "]" * 5000)),
    "flipped_tensor_bytes": _flipped_tensor_bytes,
    "truncated": lambda good: good[: len(good) // 2],
    "zero_length": lambda good: b"",
    "shape_edited": _with_header(_shape_swapped),
    "header_not_json": lambda good: good[:8] + b"\xff" * struct.unpack("<Q", good[:8])[0] + _split(good)[1],
    "token_list_edited": _with_header(_last_token_changed),
}
"""The thirteen corruptions: each must be a logged miss, and the file removed."""

OLD_FORMAT: Corruption = _with_header(_no_digest)
"""A file as pensieve wrote it before files carried a digest: unverifiable, so also removed."""

ALL: dict[str, Corruption] = {**CORRUPTIONS, "written_without_digest": OLD_FORMAT}
