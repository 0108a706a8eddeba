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
    # draft model (loaded at start as `draft_model`, else as "off"), or plainly ("off").
    speculative: Literal["off", "prompt_lookup", "draft"] = "prompt_lookup"
    draft_model: str | None = None

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
            speculative=_on_this_device(settings.speculative),
            draft_model=settings.draft_model,
        )

    def speculation(self) -> Speculation | None:
        """What an engine's jobs start with: prompt lookup, or nothing until a draft is loaded."""
        return Speculation() if self.speculative == "prompt_lookup" else None


Speculative = Literal["off", "prompt_lookup", "draft"]
_CHOSEN: dict[str, Speculative] = {"off": "off", "prompt_lookup": "prompt_lookup", "draft": "draft"}


def _on_this_device(setting: str) -> Speculative:
    """ "auto": prompt lookup where decoding waits on memory (a GPU: Metal or CUDA); off on a CPU,
    where MLX's matmul costs grow with the rows a draft adds (docs/performance.md)."""
    if setting == "auto":
        return "prompt_lookup" if mx.default_device() == mx.gpu else "off"
    return _CHOSEN[setting]
