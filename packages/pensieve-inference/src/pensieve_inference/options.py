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
    # How a lone request decodes: speculatively from its own context (prompt lookup), with a
    # draft model (loaded at start as `draft_model`, else as "off"), plainly ("off"), or "auto"
    # (prompt lookup where it was measured to pay: full-precision weights on a GPU).
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
            speculative=settings.speculative,
            draft_model=settings.draft_model,
            kv_bits=settings.kv_bits,
        )

    def speculation(self, quantized: bool) -> Speculation | None:
        """What an engine's jobs start with: prompt lookup, or nothing until a draft is loaded;
        nothing with quantized keys and values (not measured to pay, and they decode alone)."""
        if self.kv_bits is not None:
            return None
        speculative = _auto(quantized) if self.speculative == "auto" else self.speculative
        return Speculation() if speculative == "prompt_lookup" else None


def _auto(quantized: bool) -> str:
    """Prompt lookup where decoding waits on memory: a GPU, with full-precision weights. On a CPU
    MLX's matmul costs grow with the rows a draft adds. Quantized weights stay off from one H200
    run (Phi-3-mini 4-bit: 239 tok/s plain, 106 with prompt lookup), made with cuDNN's attention
    on, which alone cost bf16 prompt lookup 3x; to be measured again without it (performance.md)."""
    if mx.default_device() != mx.gpu:
        return "off"
    return "off" if quantized else "prompt_lookup"
