"""Read a GGUF file with MLX: tensors (Q4_0/Q4_1/Q8_0 stay quantized) and plain metadata.
Files with tensor types we have not checked are refused first (see `tensor_types`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import msgspec

from pensieve_core.errors import ModelLoadError

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
    check_tensor_types(path)
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc
    return GGUFContents(weights=weights, metadata={k: _plain(v) for k, v in metadata.items()})
