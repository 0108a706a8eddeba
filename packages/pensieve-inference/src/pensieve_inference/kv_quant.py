"""Keys and values kept quantized (the `kv_bits` setting), on mlx-lm's QuantizedKVCache.

mlx-lm's BatchGenerator cannot merge quantized caches, so (as mlx-lm's server does) a model with
`kv_bits` decodes its requests one at a time, each alone on generate_step; the batch keeps the
others waiting in order of arrival (batching.py). The cache is quantized from the first token,
not after generate_step's `quantized_kv_start` (5,000 tokens): every cache of the model is then
of one kind, a prefix read from the prefix cache holds what a fresh prefill would (each token's
key is quantized alone, along the head dim, whatever the chunking), and a Claude Code prompt is
past 5,000 tokens at its first turn anyway. Quantized caches stay in
memory: the disk prefix store (cache_file.py) holds full-precision layouts only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_lm.models.cache import KVCache

from pensieve_core.errors import ConfigError
from pensieve_model_support import LoadedModel, kv_layout


@dataclass(frozen=True)
class KVQuantization:
    bits: int
    group_size: int


def kv_quantization(loaded: LoadedModel, bits: int | None) -> KVQuantization | None:
    """The quantization for `loaded`'s caches, its group size fitted to the head dim."""
    if bits is None:
        return None
    layout = kv_layout(loaded.config, loaded.model)
    if layout is None:  # unknown shape: mlx-lm's default group; a head dim it does not divide fails at once
        return KVQuantization(bits=bits, group_size=64)
    if layout.group_size is None:
        raise ConfigError(
            f"kv_bits cannot quantize {loaded.name}'s cache: its head dim {layout.head_dim} is not a multiple of 32"
        )
    return KVQuantization(bits=bits, group_size=layout.group_size)


def quantized(cache: list[Any], q: KVQuantization) -> list[Any]:
    """`cache` with its full-attention layers quantized (already quantized ones kept). Sliding-window
    and state layers stay as they are: mlx-lm cannot quantize them, and their size is bounded."""
    return [c.to_quantized(group_size=q.group_size, bits=q.bits) if type(c) is KVCache else c for c in cache]
