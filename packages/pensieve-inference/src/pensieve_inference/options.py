"""EngineOptions: how an MLXEngine is set up, built once from Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import mlx.core as mx
import msgspec

from pensieve_core import Settings

from .batching import MAX_SEQUENCES
from .speculative import Speculation


class EngineOptions(msgspec.Struct, kw_only=True, frozen=True):
    """The defaults suit a test engine: no prefix cache, nothing written to disk."""

    # Sequences one worker decodes together; applies where the engine starts its own worker.
    max_sequences: int = MAX_SEQUENCES
    max_output_tokens: int | None = None
    # Bytes of cached prefixes in memory: 0 turns the cache off, None takes a share of what the weights leave.
    prefix_cache_bytes: int | None = 0
    prefix_cache_entries: int = 8
    # System prompts' caches kept here across restarts (up to prefix_cache_disk_bytes; 0 turns it off).
    prefix_cache_dir: Path | None = None
    prefix_cache_disk_bytes: int = 0
    # GGUF weights converted to MLX's format are kept here (None: converted again at each load).
    converted_dir: Path | None = None
    # Kernels MLX compiles on CUDA are kept here (None: MLX's default, under the temp dir).
    kernels_dir: Path | None = None
    # How a lone request decodes: speculatively from its own context (prompt lookup), with a
    # draft model (loaded at start as `draft_model`, else as "off"), plainly ("off"), or "auto"
    # (prompt lookup where it was measured to pay: on a GPU).
    speculative: Literal["auto", "off", "prompt_lookup", "draft"] = "prompt_lookup"
    draft_model: str | None = None
    # Keys and values in this many bits (4 or 8; None: full precision): requests then decode one
    # at a time, without speculation, and no prefix goes to disk (kv_quant.py).
    kv_bits: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> EngineOptions:
        return cls(
            max_sequences=settings.max_concurrent_sequences,
            max_output_tokens=settings.max_output_tokens,
            prefix_cache_bytes=settings.prefix_cache_bytes,
            prefix_cache_entries=settings.prefix_cache_entries,
            prefix_cache_dir=settings.prefix_cache_dir,
            prefix_cache_disk_bytes=settings.prefix_cache_disk_bytes,
            converted_dir=settings.converted_dir,
            kernels_dir=settings.kernels_dir,
            speculative=settings.speculative,
            draft_model=settings.draft_model,
            kv_bits=settings.kv_bits,
        )

    def speculation(self) -> Speculation | None:
        """What an engine's jobs start with: prompt lookup, or nothing until a draft is loaded;
        nothing with quantized keys and values (not measured to pay, and they decode alone)."""
        if self.kv_bits is not None:
            return None
        speculative = _auto() if self.speculative == "auto" else self.speculative
        return Speculation() if speculative == "prompt_lookup" else None


def _auto() -> str:
    """Prompt lookup on a GPU, where decoding waits on memory; off on a CPU, where MLX's matmul
    costs grow with the rows a draft adds. On the H200 with cuDNN's attention off it paid at
    4-bit as at bf16 (Phi-3-mini shape 4-bit, engine on/off 1.72x on edit turns; an earlier "off
    for quantized weights" came from a run whose cost was cuDNN's graphs). Metal: unmeasured."""
    return "prompt_lookup" if mx.default_device() == mx.gpu else "off"
