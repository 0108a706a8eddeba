"""What a model's keys and values cost per token of context, at full precision and quantized
(mlx-lm's QuantizedKVCache: `bits` per element plus a scale and a bias per group, in the
activations' float type), read from its config."""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx
import msgspec
from mlx.utils import tree_flatten

# Group sizes mx.quantize takes that a head dim may divide, largest first (fewer scales).
GROUP_SIZES = (64, 32)


class KVLayout(msgspec.Struct, kw_only=True, frozen=True):
    """One token's keys and values: `layers` x `kv_heads` x `head_dim`, twice (K and V)."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int

    @property
    def group_size(self) -> int | None:
        """The quantization group along the head dim (None: no size mx.quantize takes divides it)."""
        return next((g for g in GROUP_SIZES if self.head_dim % g == 0), None)

    def bytes_per_token(self, bits: int | None = None) -> float:
        """Full precision (`bits` None), or quantized with this layout's group size."""
        elements = 2 * self.layers * self.kv_heads * self.head_dim
        if bits is None:
            return float(elements * self.dtype_bytes)
        group = self.group_size or GROUP_SIZES[-1]
        return elements * (bits / 8 + 2 * self.dtype_bytes / group)


def kv_layout(config: dict[str, Any], model: Any = None) -> KVLayout | None:
    """From a Hugging Face style config (or its `text_config`); None when it lacks the counts.
    The float type is the model's own (its first floating parameter), else 2 bytes. Layers
    with a sliding window or a state instead of a cache are counted as full layers."""
    text = config.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in config:
        config = {**config, **text}
    layers, heads, hidden = (config.get(k) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    if not isinstance(layers, int) or not isinstance(heads, int) or heads < 1:
        return None
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (hidden // heads if isinstance(hidden, int) else None)
    if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
        return None
    return KVLayout(layers=layers, kv_heads=kv_heads, head_dim=head_dim, dtype_bytes=_float_bytes(model))


def _float_bytes(model: Any) -> int:
    if model is None:
        return 2
    # tree_flatten returns a list of (dotted name, array) unless it is given a dict to fill.
    for _, value in cast(list[tuple[str, Any]], tree_flatten(model.parameters())):
        if isinstance(value, mx.array) and mx.issubdtype(value.dtype, mx.floating):
            return int(value.dtype.size)
    return 2
