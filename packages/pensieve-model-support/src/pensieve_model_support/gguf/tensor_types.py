"""Which tensor types a GGUF file holds, read from its header alone, and the refusal of any
type whose decoding we have not checked: MLX turns K-quants and IQ types into float16 itself,
and gets some wrong (Q4_K's odd sub-blocks take the even ones' scale), so those we read are
converted by our own code (`convert`) and the rest refused.
The gguf package's reader would do, but it parses all metadata first (~2 s for the bundled file)."""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType

from pensieve_core.errors import ModelLoadError

from .convert import CONVERTED

# Checked against known answers here; anything else is refused until our own code reads it.
# The first six MLX reads itself; the rest go through `convert` (MLX decodes Q4_K wrongly).
SUPPORTED = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", *CONVERTED)
MLX_EXAMPLE = "mlx-community/Qwen2.5-Coder-7B-Instruct-4bit"

# GGUF metadata value types: byte sizes of the fixed ones; 8 is a string, 9 an array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4  # GGML_MAX_DIMS


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def skip(self, n: int) -> None:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("runs past the end of the file")
        self.at += n

    def string(self) -> bytes:
        (n,) = self.take("<Q")
        start = self.at
        self.skip(n)
        return self.data[start : self.at]

    def skip_value(self, kind: int, depth: int = 0) -> None:
        if kind in _FIXED:
            self.skip(_FIXED[kind])
        elif kind == _STRING:
            self.string()
        elif kind == _ARRAY and depth < 2:
            item, count = self.take("<IQ")
            if item in _FIXED:
                self.skip(_FIXED[item] * count)
            else:
                for _ in range(count):
                    self.skip_value(item, depth + 1)
        else:
            raise ValueError(f"unknown metadata value type {kind}")


def _type_name(kind: int) -> str:
    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return f"unknown type {kind}"


@contextlib.contextmanager
def gguf_header(path: Path) -> Iterator[tuple[_Cursor, int, int]]:
    """A cursor at the first metadata key of a GGUF file, with its tensor and key counts."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        r = _Cursor(data)
        magic, version = r.take("<4sI")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"not a GGUF v2/v3 file (magic {magic!r}, version {version})")
        n_tensors, n_kv = r.take("<QQ")
        yield r, n_tensors, n_kv


def tensor_types(path: Path) -> dict[str, str]:
    """Each tensor's name and GGML type name, in file order."""
    try:
        with gguf_header(path) as (r, n_tensors, n_kv):
            for _ in range(n_kv):
                r.string()
                r.skip_value(*r.take("<I"))
            types = {}
            for _ in range(n_tensors):
                name = r.string().decode("utf-8", "replace")
                (dims,) = r.take("<I")
                if dims > _MAX_DIMS:
                    raise ValueError(f"tensor {name!r} has {dims} dimensions")
                r.skip(8 * dims)
                kind, _offset = r.take("<IQ")
                types[name] = _type_name(kind)
    except (OSError, ValueError, struct.error) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc
    return types


def tensor_type_refusal(types: dict[str, str]) -> str | None:
    """Why a file of these tensor types does not load (None: it does), naming what does."""
    refused = [name for name, kind in types.items() if kind not in SUPPORTED]
    if not refused:
        return None
    kinds = ", ".join(sorted({types[name] for name in refused}))
    return (
        f"holds {kinds} tensors ({len(refused)} of {len(types)}, e.g. {refused[0]}), which pensieve "
        f"does not read correctly yet; supported GGUF tensor types: {', '.join(SUPPORTED)}. Use a GGUF of those "
        f"types or an MLX model instead, e.g. --model {MLX_EXAMPLE}"
    )


def check_tensor_types(path: Path) -> dict[str, str]:
    """Refuse a file holding any tensor type outside SUPPORTED, naming the types found."""
    types = tensor_types(path)
    if (why := tensor_type_refusal(types)) is not None:
        raise ModelLoadError(f"{path.name} {why}")
    return types
