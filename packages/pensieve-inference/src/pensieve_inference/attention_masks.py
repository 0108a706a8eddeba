"""Batch steps with no attention mask when no row of the batch is padded.

mlx-lm's BatchKVCache always builds a boolean mask array (causal, and the rows' left padding).
MLX's CUDA backend has no fused attention for an array mask: its vector kernel (one query token
a row, the decode step) refuses one, so every layer of every batched step falls back to
matmul, mask, softmax, matmul. With every row's padding at 0 the array says nothing that
`None` (one query token) or "causal" (several) does not, and those run the fused kernel. This
is an exact rewrite, not an approximation: padded rows keep mlx-lm's array.

Installed on mlx-lm's class (its batch caches are made inside mlx-lm, from KVCache.merge), by
ModelBatch; `installed(False)` puts mlx-lm's own method back, for a side-by-side measurement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from mlx_lm.models.cache import BatchKVCache

_mlx_lm_mask = BatchKVCache.make_mask


def padding_free_mask(self: BatchKVCache, n: int, return_array: bool = False, **kwargs: Any) -> Any:
    # The padding is a tiny array, read on the host: at most one wait per change of the batch's
    # rows (filter and extend replace it), a ready array's read after that.
    padding = cast(list[int], self.left_padding.tolist())
    if return_array or kwargs.get("window_size") is not None or any(padding):
        return _mlx_lm_mask(self, n, return_array=return_array, **kwargs)
    return None if n == 1 else "causal"


def install(enabled: bool = True) -> None:
    BatchKVCache.make_mask = padding_free_mask if enabled else _mlx_lm_mask  # type: ignore[method-assign,assignment]


def is_installed() -> bool:
    return vars(BatchKVCache)["make_mask"] is padding_free_mask


@contextmanager
def installed(enabled: bool) -> Iterator[None]:
    """This setting for the block, the previous one after it."""
    before = is_installed()
    install(enabled)
    try:
        yield
    finally:
        install(before)
