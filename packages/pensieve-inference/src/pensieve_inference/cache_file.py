"""One persisted prefix as a file, checked on the way back rather than trusted.

The layout is mlx-lm's prompt-cache safetensors (layer i's keys, values and offset are the
tensors `i.0`, `i.1`, `i.2`; `load_prompt_cache` reads our files), plus a format version and a
digest in the metadata over the weights identity, the token ids and every tensor's name, dtype,
shape and bytes. Reading caps the header length by the file's size, decodes the header against a
schema, checks that the tensors tile the data section, and compares the digest before any tensor
is used.

The digest is a tree: each piece of at most PIECE_BYTES of a tensor is hashed on its own, by as
many threads as there are cores (hashlib lets go of the GIL), and the file's digest hashes the
pieces' digests in order. `read` lets MLX's own loader bring the tensors into memory (one copy,
no Python bytes) and hashes those very arrays; `verify` reads each piece into its thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import mlx.core as mx
import msgspec
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models.cache import KVCache

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
# Format 1 (no version in the file) hashed all bytes in one stream; 2 hashes pieces, a tree.
FORMAT = "2"
PIECE_BYTES = 16 << 20  # part of the digest's definition: changing it needs a new FORMAT
_WORKERS = min(32, os.cpu_count() or 1)

# safetensors dtype -> (MLX dtype, a NumPy dtype of its item size: uint16 stands in for bfloat16).
_DTYPES: dict[str, tuple[mx.Dtype, type[np.generic]]] = {
    "F16": (mx.float16, np.float16),
    "BF16": (mx.bfloat16, np.uint16),
    "F32": (mx.float32, np.float32),
    "I32": (mx.int32, np.int32),
}
_NAMES = {mlx: name for name, (mlx, _) in _DTYPES.items()}

Count = Annotated[int, msgspec.Meta(ge=0)]


class CorruptFileError(Exception):
    """Not a prefix cache pensieve wrote, or no longer the bytes it wrote; the message says why."""


class _Tensor(msgspec.Struct, forbid_unknown_fields=True):
    dtype: Literal["F16", "BF16", "F32", "I32"]
    shape: Annotated[list[Count], msgspec.Meta(max_length=8)]
    data_offsets: tuple[Count, Count]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(_DTYPES[self.dtype][1]).itemsize


class _Metadata(msgspec.Struct):
    """Pensieve's own metadata (mlx-lm files it under the `0.` prefix)."""

    pensieve_model: str
    pensieve_tokens: str
    pensieve_digest: str = ""
    pensieve_format: str = ""
    pensieve_model_name: str = ""
    pensieve_saved_at: str = ""


_header = msgspec.json.Decoder(dict[str, msgspec.Raw])
_tensor = msgspec.json.Decoder(_Tensor)
_strings = msgspec.json.Decoder(dict[str, str])
_tokens = msgspec.json.Decoder(list[Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]])


@dataclass(frozen=True)
class CacheHeader:
    """What a checked header says: whose prefix, which tokens, where each tensor lies."""

    model: str
    model_name: str
    tokens: tuple[int, ...]
    digest: str
    layers: int
    tensors: dict[str, _Tensor]
    data_start: int


def token_hash(tokens: list[int] | tuple[int, ...]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}I", *tokens)).hexdigest()[:32]


# A piece: the identity that goes into its hash (tensor, dtype, shape, where in the tensor it
# starts) and a callable, run on a pool thread, that returns its bytes.
Piece = tuple[bytes, Callable[[], Any]]


def _pieces(name: str, dtype: str, shape: list[int], nbytes: int, fetch: Callable[[int, int], Any]) -> Iterator[Piece]:
    for start in range(0, max(nbytes, 1), PIECE_BYTES):  # an empty tensor is one empty piece
        length = min(PIECE_BYTES, nbytes - start)
        yield msgspec.json.encode([name, dtype, shape, start]), partial(fetch, start, length)


def _hash_piece(identity: bytes, fetch: Callable[[], Any]) -> bytes:
    h = hashlib.blake2b(identity, digest_size=32)  # sizes follow from shape and start: no ambiguity
    h.update(fetch())
    return h.digest()


def _digest(model: str, tokens: str, pieces: Iterable[Piece]) -> str:
    """The pieces are taken on this thread (so their source may evaluate arrays as it goes) and
    hashed on the pool's."""
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="pensieve-cache-digest") as pool:
        futures = [pool.submit(_hash_piece, identity, fetch) for identity, fetch in pieces]
        h = hashlib.blake2b(msgspec.json.encode([FORMAT, model, tokens]), digest_size=32)
        for future in futures:
            h.update(future.result())
    return h.hexdigest()


def _bytes_of(a: mx.array) -> Callable[[int, int], memoryview]:
    # mx.array has the buffer protocol, but its stubs declare no __buffer__.
    view = memoryview(a).cast("B")  # type: ignore[arg-type]
    return lambda start, length: view[start : start + length]


def write(path: Path, layers: list[KVCache], *, model: str, model_name: str, tokens: tuple[int, ...]) -> None:
    """Evaluated, contiguous KV caches (one per layer) into `path`, with their digest."""
    arrays: dict[str, mx.array] = {}
    for i, c in enumerate(layers):
        assert c.keys is not None and c.values is not None  # evaluated caches hold both
        arrays.update({f"{i}.0": c.keys, f"{i}.1": c.values, f"{i}.2": mx.array(c.offset, dtype=mx.int32)})
    mx.eval(list(arrays.values()))
    text = json.dumps(list(tokens))
    pieces = (
        piece
        for n, a in sorted(arrays.items())
        for piece in _pieces(n, _NAMES[a.dtype], list(a.shape), a.nbytes, _bytes_of(a))
    )
    digest = _digest(model, text, pieces)
    ours = {
        "pensieve_format": FORMAT,
        "pensieve_model": model,
        "pensieve_model_name": model_name,
        "pensieve_tokens": text,
        "pensieve_saved_at": str(time.time()),
        "pensieve_digest": digest,
    }
    scalars = ["", *((f"{i}.2", "scalar") for i in range(len(layers)))]  # as save_prompt_cache
    mx.save_safetensors(str(path), arrays, dict(tree_flatten([ours, ["KVCache"] * len(layers), scalars])))


def _decode(what: str, decoder: msgspec.json.Decoder[Any], raw: bytes | str | msgspec.Raw) -> Any:
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:  # msgspec's own guard on deep nesting
        raise CorruptFileError(f"{what}: {exc}") from exc


def _read_header(f: BinaryIO, path: Path) -> CacheHeader:
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise CorruptFileError(f"{size} bytes, too short for a safetensors file")
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise CorruptFileError(f"header length {length} does not fit in the file's {size} bytes")
    entries = _decode("header", _header, f.read(length))
    if "__metadata__" not in entries:
        raise CorruptFileError("no __metadata__ in the header")
    metadata = _decode("__metadata__", _strings, entries.pop("__metadata__"))
    tensors = {name: _decode(f"tensor {name!r}", _tensor, value) for name, value in entries.items()}
    try:
        ours = msgspec.convert({k[2:]: v for k, v in metadata.items() if k.startswith("0.")}, _Metadata)
    except msgspec.ValidationError as exc:
        raise CorruptFileError(f"__metadata__: {exc}") from exc
    tokens = tuple(_decode("token ids", _tokens, ours.pensieve_tokens))
    # Files from before the digest cannot be checked: a miss, rewritten on next use.
    if not ours.pensieve_digest:
        raise CorruptFileError("no digest (written by an older pensieve)")
    if ours.pensieve_format != FORMAT:
        found = ours.pensieve_format or "1"
        raise CorruptFileError(
            f"stale: format {found}, this pensieve reads format {FORMAT} (written by another version)"
        )
    if not tokens or token_hash(tokens) != path.stem:
        raise CorruptFileError("its token ids do not match its name")
    if ours.pensieve_model != path.parent.name:
        raise CorruptFileError(f"written for weights {ours.pensieve_model!r}, found under {path.parent.name!r}")
    layers = _check_layers(metadata, tensors, len(tokens))
    _check_tiling(tensors, size - 8 - length)
    return CacheHeader(
        ours.pensieve_model, ours.pensieve_model_name, tokens, ours.pensieve_digest, layers, tensors, 8 + length
    )


def _check_layers(metadata: dict[str, str], tensors: dict[str, _Tensor], n_tokens: int) -> int:
    """Plain KV caches only, each holding exactly the file's tokens: returns the layer count."""
    layers = sum(k.startswith("1.") for k in metadata)
    if layers == 0 or any(metadata.get(f"1.{i}") != "KVCache" for i in range(layers)):
        raise CorruptFileError("the cache classes are not all KVCache")
    if set(tensors) != {f"{i}.{j}" for i in range(layers) for j in range(3)}:
        raise CorruptFileError(f"the tensors are not the keys, values and offset of {layers} layers")
    for i in range(layers):
        keys, values, offset = tensors[f"{i}.0"], tensors[f"{i}.1"], tensors[f"{i}.2"]
        if len(keys.shape) != 4 or len(values.shape) != 4 or keys.shape[:3] != values.shape[:3]:
            raise CorruptFileError(f"layer {i}: keys {keys.shape} and values {values.shape} do not pair")
        if keys.shape[2] != n_tokens:
            raise CorruptFileError(f"layer {i}: holds {keys.shape[2]} positions for {n_tokens} tokens")
        if offset.dtype != "I32" or offset.shape:
            raise CorruptFileError(f"layer {i}: the offset is not one int32")
    return layers


def _check_tiling(tensors: dict[str, _Tensor], data_bytes: int) -> None:
    at = 0
    for name, t in sorted(tensors.items(), key=lambda item: item[1].data_offsets):
        start, end = t.data_offsets
        if start != at or end - start != t.nbytes:
            raise CorruptFileError(f"tensor {name!r} at bytes {start}..{end} does not fit its shape or neighbours")
        at = end
    if at != data_bytes:
        raise CorruptFileError(f"the tensors hold {at} bytes, the file's data section {data_bytes}")


def read_header(path: Path) -> CacheHeader:
    """The checked header; CorruptFileError says what is wrong, OSError if unreadable."""
    with path.open("rb") as f:
        return _read_header(f, path)


def _verify(header: CacheHeader, pieces: Iterable[Piece]) -> None:
    digest = _digest(header.model, json.dumps(list(header.tokens)), pieces)
    if not hmac.compare_digest(digest, header.digest):
        raise CorruptFileError("the tensor bytes do not match the digest")


def verify(path: Path) -> CacheHeader:
    """The header, and every tensor's bytes against the digest (nothing is loaded: each thread
    reads only the piece it hashes)."""
    with path.open("rb") as f:
        header = _read_header(f, path)
        fd = f.fileno()

        def fetch(at: int) -> Callable[[int, int], bytes]:
            def piece(start: int, length: int) -> bytes:
                data = os.pread(fd, length, at + start)  # positioned: the threads share no offset
                if len(data) != length:
                    raise CorruptFileError("the file was cut short while reading")
                return data

            return piece

        tensors = sorted(header.tensors.items())
        _verify(
            header,
            (
                piece
                for n, t in tensors
                for piece in _pieces(n, t.dtype, t.shape, t.nbytes, fetch(header.data_start + t.data_offsets[0]))
            ),
        )
    return header


def _load(path: Path, header: CacheHeader) -> dict[str, mx.array]:
    """MLX's lazy load of the file, which must hold what its checked header said."""
    try:
        arrays = mx.load(str(path), format="safetensors")
    except (RuntimeError, ValueError) as exc:  # gone or unreadable since the header was read
        raise OSError(f"MLX could not open it: {exc}") from exc
    assert isinstance(arrays, dict)
    expected = {n: (_DTYPES[t.dtype][0], tuple(t.shape)) for n, t in header.tensors.items()}
    if {n: (a.dtype, tuple(a.shape)) for n, a in arrays.items()} != expected:
        raise CorruptFileError("the file changed while it was read")
    return arrays


def read(path: Path) -> tuple[CacheHeader, list[KVCache]]:
    """The checked header and its KV caches, built only once the digest matches."""
    header = read_header(path)
    arrays = _load(path, header)

    def pieces() -> Iterator[Piece]:
        for name, a in sorted(arrays.items()):
            try:
                mx.eval(a)  # one tensor at a time, so the threads hash it while MLX reads the next
            except RuntimeError as exc:  # the file cut short under us: the next header check says so
                raise OSError(f"MLX could not read it: {exc}") from exc
            t = header.tensors[name]
            yield from _pieces(name, t.dtype, t.shape, t.nbytes, _bytes_of(a))

    _verify(header, pieces())
    layers = [
        KVCache.from_state((arrays[f"{i}.0"], arrays[f"{i}.1"], len(header.tokens))) for i in range(header.layers)
    ]
    return header, layers
