"""Converted GGUF weights kept on disk, so that a file is converted once (a 7B Q4_K_M takes about a
minute) and later starts memory-map the result as they would an MLX directory.

Layout: `<root>/<identity>/model.safetensors`, where the identity digests the GGUF's resolved path,
size and modification time and `CONVERTER_VERSION` (a touched file or a changed converter is a new
identity). A copy is checked before it is used: the header must decode, the tensors must tile the
data section to the file's last byte (a truncated file fails here), and every name, dtype and shape
must be what converting the GGUF gives (`converted_layout`). A copy that fails is a logged miss: it
is removed and the GGUF converted again. Tensor bytes are not hashed (that would read gigabytes).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, cast

import mlx.core as mx
import msgspec
from gguf import GGUFReader

from .convert import CONVERTER_VERSION, ITEM_BYTES, converted_layout

log = logging.getLogger("pensieve.converted")

FILE_NAME = "model.safetensors"
_MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit

Count = Annotated[int, msgspec.Meta(ge=0)]


class _Tensor(msgspec.Struct, forbid_unknown_fields=True):
    dtype: str
    shape: Annotated[list[Count], msgspec.Meta(max_length=8)]
    data_offsets: tuple[Count, Count]


_header = msgspec.json.Decoder(dict[str, msgspec.Raw])
_tensor = msgspec.json.Decoder(_Tensor)
_strings = msgspec.json.Decoder(dict[str, str])


class CorruptConvertedFile(Exception):
    """Not the bytes pensieve wrote, or not what the GGUF converts to; the message says why."""


@dataclass(frozen=True)
class ConvertedFile:
    path: Path
    source: str
    size_bytes: int
    saved_at: float
    problem: str = ""


def source_identity(gguf_path: Path) -> str:
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{CONVERTER_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def converted_path(root: Path, gguf_path: Path) -> Path:
    return root / source_identity(gguf_path) / FILE_NAME


def read_header(path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Tensors (dtype, shape) and metadata of a safetensors file, checked to tile the file exactly."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptConvertedFile(f"{size} bytes: shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER_BYTES):
            raise CorruptConvertedFile(f"header length {length} does not fit in the file's {size} bytes")
        raw = f.read(length)
    try:
        entries = _header.decode(raw)
        metadata = _strings.decode(entries.pop("__metadata__", b"{}"))
        tensors = {name: _tensor.decode(value) for name, value in entries.items()}
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise CorruptConvertedFile(f"the header does not decode: {exc}") from exc
    end = 0
    for name, t in sorted(tensors.items(), key=lambda item: item[1].data_offsets):
        start, stop = t.data_offsets
        if t.dtype not in ITEM_BYTES or start != end or stop - start != math.prod(t.shape) * ITEM_BYTES[t.dtype]:
            raise CorruptConvertedFile(f"tensor {name!r} ({t.dtype}, {t.shape}) does not fit at bytes {start}-{stop}")
        end = stop
    if 8 + length + end != size:
        raise CorruptConvertedFile(f"the tensors end at byte {8 + length + end}, the file at {size} (truncated?)")
    return {name: (t.dtype, tuple(t.shape)) for name, t in tensors.items()}, metadata


def load_converted(root: Path, gguf_path: Path, reader: GGUFReader) -> dict[str, mx.array] | None:
    """The kept copy of `gguf_path`'s converted weights, memory-mapped; None (logged) if absent or bad."""
    path = converted_path(root, gguf_path)
    if not path.exists():
        log.info("converted_weights_miss path=%s source=%s", path, gguf_path)
        return None
    try:
        tensors, _ = read_header(path)
        expected = converted_layout(reader)
        if tensors != expected:
            wrong = sorted(set(tensors.items()) ^ set(expected.items()))[:1]
            raise CorruptConvertedFile(f"{len(tensors)} tensors, not the {len(expected)} the GGUF converts to: {wrong}")
        # mx.load's stub is one union for every format: a safetensors file is a dict of arrays.
        weights = cast(dict[str, mx.array], mx.load(str(path)))
    except (CorruptConvertedFile, OSError, RuntimeError, ValueError) as exc:
        log.warning("converted_weights_corrupt path=%s problem=%s action=removed, converting again", path, exc)
        _remove(path)
        return None
    log.info("converted_weights_hit path=%s", path)
    return weights


def save_converted(root: Path, gguf_path: Path, weights: dict[str, mx.array]) -> Path | None:
    """Write atomically (a temporary name, then rename); older copies of the same GGUF go.
    A failure (disk full, read-only home) is logged: the model is served all the same."""
    path = converted_path(root, gguf_path)
    # mx.save_safetensors appends ".safetensors" to any other name.
    tmp = path.with_name(f".tmp-{os.getpid()}-{time.monotonic_ns()}.safetensors")
    source = str(gguf_path.resolve())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(".tmp-*.safetensors"):  # left by a start that died writing
            stale.unlink(missing_ok=True)
        metadata = {"pensieve_source": source, "pensieve_converter": CONVERTER_VERSION}
        mx.save_safetensors(str(tmp), weights, metadata=metadata)
        os.replace(tmp, path)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("converted_weights_save_failed path=%s error=%s", path, exc)
        _remove(tmp)
        return None
    for old in list_converted(root):
        if old.source == source and old.path != path:
            _remove(old.path)
    log.info("converted_weights_saved path=%s bytes=%d", path, path.stat().st_size)
    return path


def list_converted(root: Path) -> list[ConvertedFile]:
    """Every kept copy, newest first; one whose header does not check out carries its problem."""
    found = []
    for path in root.glob(f"*/{FILE_NAME}") if root.is_dir() else ():
        try:
            _, metadata = read_header(path)
            problem = ""
        except (CorruptConvertedFile, OSError) as exc:
            metadata, problem = {}, str(exc)
        stat = path.stat()
        found.append(ConvertedFile(path, metadata.get("pensieve_source", ""), stat.st_size, stat.st_mtime, problem))
    return sorted(found, key=lambda f: f.saved_at, reverse=True)


def clear_converted(root: Path) -> tuple[int, int]:
    """Delete every kept copy and left-over temporary file; returns (files, bytes)."""
    files = size = 0
    for path in [*root.glob(f"*/{FILE_NAME}"), *root.glob("*/.tmp-*.safetensors")] if root.is_dir() else ():
        size += path.stat().st_size
        files += 1
        _remove(path)
    return files, size


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # only when nothing else is left there
    except OSError:
        pass
