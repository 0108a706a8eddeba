"""Read a GGUF file: tensors (quantized ones in MLX's quantized form) and plain metadata.
Files with tensor types we do not read are refused first (see `tensor_types`); files of the types
MLX reads right go through `mx.load`, the rest through our conversion (see `convert`), kept on
disk after the first time (see `converted_store`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import msgspec

from pensieve_core.errors import ModelLoadError

from . import converted_store
from .convert import CONVERTED, ITEM_BYTES, converted_layout, gguf_metadata, open_gguf, read_converted
from .tensor_types import check_tensor_types, tensor_types


class GGUFContents(msgspec.Struct):
    weights: dict[str, mx.array]
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_field(self, name: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{name}", default)


def _plain(value: Any) -> Any:
    # Scalars arrive as 0-d MLX arrays; token types as a 1-d array.
    if isinstance(value, mx.array):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def read_gguf(path: Path, converted_dir: Path | None = None) -> GGUFContents:
    """`converted_dir`: where converted weights are kept between starts (None: convert every time)."""
    types = check_tensor_types(path)
    if any(kind in CONVERTED for kind in types.values()):
        if converted_dir is not None:
            reader = open_gguf(path)
            kept = converted_store.load_converted(converted_dir, path, reader)
            if kept is not None:
                return GGUFContents(weights=kept, metadata=gguf_metadata(reader))
        weights, metadata = read_converted(path)
        if converted_dir is not None:
            converted_store.save_converted(converted_dir, path, weights)
        return GGUFContents(weights=weights, metadata=metadata)
    try:
        # mx.load's stub is one union for every format: with metadata, a GGUF file is this pair.
        weights, metadata = cast(tuple[dict[str, mx.array], dict[str, Any]], mx.load(str(path), return_metadata=True))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc
    return GGUFContents(weights=weights, metadata={k: _plain(v) for k, v in metadata.items()})


def loaded_bytes(path: Path, converted_dir: Path | None = None) -> int:
    """What the weights take in memory: for a file we convert, MLX's arrays (a scale and a bias per
    32 weights, and wider codes for the re-quantized types), else the file's own size."""
    if not any(kind in CONVERTED for kind in tensor_types(path).values()):
        return path.stat().st_size
    layout = None
    if converted_dir is not None and (kept := converted_store.converted_path(converted_dir, path)).is_file():
        # A kept copy's header is quicker to read than the GGUF's (no vocabulary to parse).
        try:
            layout = converted_store.read_header(kept)[0]
        except (converted_store.CorruptConvertedFile, OSError):
            pass  # loading will log it, remove it and convert again
    layout = layout or converted_layout(open_gguf(path))
    return sum(math.prod(shape) * ITEM_BYTES[dtype] for dtype, shape in layout.values())
