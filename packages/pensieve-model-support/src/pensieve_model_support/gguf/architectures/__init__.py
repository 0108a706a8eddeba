"""One module per GGUF architecture, each with the same surface:
`model_config(gguf) -> dict` (an mlx-lm config) and `tensor_name(gguf_name) -> str`."""

from __future__ import annotations

import importlib
from types import ModuleType

from pensieve_core.errors import ModelLoadError

SUPPORTED = ("llama",)


def architecture_module(name: str) -> ModuleType:
    if name not in SUPPORTED:
        raise ModelLoadError(f"GGUF architecture {name!r} is not supported yet (supported: {', '.join(SUPPORTED)})")
    return importlib.import_module(f"{__name__}.{name}")
