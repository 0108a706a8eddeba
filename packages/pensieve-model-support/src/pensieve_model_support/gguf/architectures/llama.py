"""GGUF `llama` (Llama 2/3.x, Mistral, SmolLM) → mlx-lm `llama`.

llama.cpp's converter permutes q/k for its rotary layout, which is MLX's "traditional" one, so
they load unchanged with `rope_traditional`. Llama 3's rope scaling arrives as `rope_freqs`, one
divisor per frequency; mlx-lm wants the parameters those came from (`_llama3_scaling`)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from pensieve_core.errors import ModelLoadError

from ..reader import GGUFContents
from ._base import BLOCK_NAMES, base_config, rename, rope_scaling


def model_config(gguf: GGUFContents) -> dict[str, Any]:
    config = base_config(gguf, "llama")
    config["rope_traditional"] = True
    config["rope_scaling"] = rope_scaling(gguf)
    if (freqs := gguf.weights.get("rope_freqs.weight")) is not None:
        config["rope_scaling"] = _llama3_scaling(np.array(freqs, np.float64), config["rope_theta"], config["head_dim"])
    return config


def transform(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    weights.pop("rope_freqs.weight", None)  # now in the config
    return weights


def tensor_name(name: str) -> str | None:
    return rename(name, BLOCK_NAMES)


def _llama3_divisors(scaling: dict[str, Any], base: float, dims: int) -> np.ndarray:
    """What the converter writes for these parameters (and mlx-lm's Llama3RoPE computes)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * np.pi * base ** (np.arange(0, dims, 2) / dims)
    smooth = (old / wavelen - low) / (high - low)
    medium = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < old / high, 1.0, np.where(wavelen > old / low, factor, medium))


def _llama3_scaling(divisors: np.ndarray, base: float, dims: int) -> dict[str, Any] | None:
    """Between the short wavelengths (divisor 1) and the long ones (`factor`), the converter's
    s = (old / wavelength - low) / (high - low) is linear in 1 / wavelength: two such frequencies
    give it (low = 1 loses nothing, scaling all three changes no divisor). With fewer, Llama 3's
    own values (low 1, high 4, 8192 positions); either way checked against every divisor."""
    wrong = ModelLoadError("the GGUF's rope_freqs are not a Llama 3 rope scaling, the only kind pensieve reads")
    if len(divisors) != dims // 2:
        raise wrong
    factor = float(divisors.max())
    if factor == 1.0:
        return None
    scaling: dict[str, Any] = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192.0,
    }
    medium = (divisors > 1 + 1e-6) & (divisors < factor * (1 - 1e-6))
    if medium.sum() >= 2:
        wavelen = 2 * np.pi * base ** (np.arange(0, dims, 2) / dims)
        s = (1 / divisors[medium] - 1 / factor) / (1 - 1 / factor)
        slope, intercept = np.polyfit(1 / wavelen[medium], s, 1)  # s = old/(high-low)/wavelength - low/(high-low)
        # Six digits: the fit's float32 noise off the round numbers configs hold (then checked below).
        scaling["high_freq_factor"] = float(f"{1 - 1 / intercept:.6g}")
        scaling["original_max_position_embeddings"] = float(f"{-slope / intercept:.6g}")
    if not np.allclose(_llama3_divisors(scaling, base, dims), divisors, rtol=1e-4):
        raise wrong
    return scaling
