"""Read a GGUF file: tensors (quantized ones in MLX's quantized form) and plain metadata.
Files with tensor types we do not read are refused first (see `tensor_types`); files of the types
MLX reads right go through `mx.load`, the rest through our conversion (see `convert`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import msgspec

from pensieve_core.errors import ModelLoadError

from .convert import CONVERTED, read_converted
from .tensor_types import check_tensor_types


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


def read_gguf(path: Path) -> GGUFContents:
    types = check_tensor_types(path)
    if any(kind in CONVERTED for kind in types.values()):
        weights, metadata = read_converted(path)
        return GGUFContents(weights=weights, metadata=metadata)
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc
    return GGUFContents(weights=weights, metadata={k: _plain(v) for k, v in metadata.items()})
