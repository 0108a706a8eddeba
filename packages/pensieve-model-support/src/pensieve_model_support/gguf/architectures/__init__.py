"""One module per GGUF architecture (llama.cpp's `general.architecture`), each with the same surface:
`model_config(gguf) -> dict` (an mlx-lm config), `tensor_name(gguf_name) -> str | None` (the mlx-lm
parameter), and, where llama.cpp's converter changed the layout, `transform(weights, config) ->
weights`, which undoes that on the GGUF-named weights before they are renamed."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from pensieve_core.errors import ModelLoadError

SUPPORTED = ("llama", "qwen2", "qwen3", "qwen3moe", "phi3", "gemma2", "gemma3")


def architecture_module(name: str, model_name: str | None = None) -> ModuleType:
    """`model_name` (the file's `general.name`) names the MLX build suggested when `name` is not read."""
    if name not in SUPPORTED:
        repo = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name or "").strip("-") or "<model>"
        raise ModelLoadError(
            f"GGUF architecture {name!r} is not supported (supported: {', '.join(SUPPORTED)}); an MLX build "
            f"of the model may load instead: look for one such as --model mlx-community/{repo}-4bit"
        )
    return importlib.import_module(f"{__name__}.{name}")
