"""Turn a GGUF file into an mlx-lm model and tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_core.errors import ModelLoadError

from ..mlx_lm_internals import model_classes
from .architectures import architecture_module
from .reader import GGUFContents, read_gguf
from .tokenizer import build_tokenizer, detokenizer_class, eos_token_ids

GROUP_SIZE = 32


def _quantized_bits(weights: dict[str, mx.array]) -> dict[str, int]:
    """Bits per quantized layer: packed uint32 words × 32 over input columns."""
    bits = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            layer = name[: -len(".scales")]
            packed = weights[f"{layer}.weight"]
            bits[layer] = packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
    return bits


def build_model(gguf: GGUFContents) -> tuple[nn.Module, dict[str, Any]]:
    arch = architecture_module(gguf.architecture, gguf.metadata.get("general.name"))
    config = arch.model_config(gguf)
    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))

    weights = arch.transform(dict(gguf.weights), config) if hasattr(arch, "transform") else gguf.weights
    renamed = {}
    for name, value in weights.items():
        target = arch.tensor_name(name)
        if target is None:
            raise ModelLoadError(f"unexpected tensor {name!r} in a {gguf.architecture} GGUF file")
        renamed[target] = value
    bits = {arch.tensor_name(f"{k}.weight").removesuffix(".weight"): b for k, b in _quantized_bits(weights).items()}
    if bits:
        nn.quantize(
            model,
            class_predicate=lambda path, _m: {"group_size": GROUP_SIZE, "bits": bits[path]} if path in bits else False,
        )
    renamed = model.sanitize(renamed) if hasattr(model, "sanitize") else renamed
    try:
        model.load_weights(list(renamed.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(f"GGUF weights do not fit the {gguf.architecture} model: {exc}") from exc
    mx.eval(model.parameters())
    model.eval()
    return model, config


def load_gguf(path: Path, converted_dir: Path | None = None) -> tuple[nn.Module, TokenizerWrapper, dict[str, Any]]:
    gguf = read_gguf(path, converted_dir)
    model, config = build_model(gguf)
    hf_tokenizer = build_tokenizer(gguf.metadata)
    tokenizer = TokenizerWrapper(
        hf_tokenizer, detokenizer_class(gguf.metadata), eos_token_ids=eos_token_ids(gguf.metadata)
    )
    return model, tokenizer, config
