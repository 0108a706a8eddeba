"""The private parts of mlx-lm pensieve relies on, reached from here only, so that a change in
mlx-lm breaks one module and its test (tests/test_mlx_lm_internals.py), not a load at run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# mlx.nn re-exports Module through a star import, which mypy --strict does not follow.
from mlx.nn.layers.base import Module
from mlx_lm.tokenizer_utils import TokenizerWrapper
from mlx_lm.utils import _get_classes


def model_classes(config: dict[str, Any]) -> tuple[Callable[[Any], Module], Any]:
    """mlx-lm's `Model` class (called with its args) and its `ModelArgs` for a config's
    `model_type` (and remappings): what `mlx_lm.load` builds from, for weights that do not come
    from a model directory."""
    classes: tuple[Callable[[Any], Module], Any] = _get_classes(config)
    return classes


def hf_tokenizer(wrapper: TokenizerWrapper) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's wrapper (its attributes are forwarded, but a
    library that wants the tokenizer object itself, llguidance, needs it whole)."""
    return wrapper._tokenizer
