"""The engine protocol the server talks to, and the typed events that cross from the
generation thread to the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec

from pensieve_claude_types import (
    CacheControl,
    Effort,
    MessageParam,
    StopReason,
    TextBlockParam,
    ThinkingConfig,
    Tool,
    ToolChoice,
)

from .errors import GenerationError, PensieveError


class GenerationRequest(msgspec.Struct, kw_only=True):
    messages: list[MessageParam]
    max_tokens: int
    system: str | list[TextBlockParam] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    thinking: ThinkingConfig | None = None
    # output_config.format: the text answer must be one JSON value valid against this schema.
    output_schema: dict[str, Any] | None = None
    # output_config.effort in force for this answer: the last message's own, else the top-level one.
    effort: Effort | None = None
    # Top-level (automatic) caching: the breakpoint sits on the request's last block.
    cache_control: CacheControl | None = None
    request_id: str = ""


class Phases(msgspec.Struct, frozen=True, kw_only=True):
    """Where a request's time went before its prefill, in milliseconds: templating (with the
    message boundaries), encoding the prompt, setting up the tool or format constraint, waiting
    for the worker to take it (admission), and finding and copying its cached prefix."""

    render: float = 0.0
    tokenize: float = 0.0
    grammar: float = 0.0
    queue: float = 0.0
    cache: float = 0.0


class Started(msgspec.Struct, tag=True):
    """The job is on the worker and about to prefill: the prompt's size is known, how much of it
    comes from the prefix cache (read), and how much of what is prefilled now lies at or before
    the request's last cache_control breakpoint (creation, as the API counts it)."""

    prompt_tokens: int
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    # With the prefix cache on and more than the last token to prefill: the token where reuse
    # ended, and which part of the prompt it lies in ("system and tools", "conversation" or
    # "last message"): where a slow turn's prompt first left what was cached.
    reuse_ended_at: int | None = None
    reuse_ended_in: str | None = None
    phases: Phases = Phases()


class PrefillProgress(msgspec.Struct, tag=True):
    """A long prompt's prefill moved on (one per chunk of the prefill lane): `done` of its
    `total` tokens are in the cache, the part the prefix cache read included. Only a long
    prompt (the lane's) reports; the status page shows it, the Messages API does not."""

    done: int
    total: int


class TextDelta(msgspec.Struct, tag=True):
    text: str


class ThinkingDelta(msgspec.Struct, tag=True):
    """Reasoning text, from a model that thinks before it answers."""

    thinking: str


class ThinkingEnd(msgspec.Struct, tag=True):
    """The thinking section closed (the server signs what it received)."""


class ToolUseStart(msgspec.Struct, tag=True):
    """The model began a tool call: its name is known, its input follows."""

    id: str
    name: str


class ToolInputDelta(msgspec.Struct, tag=True):
    """More of the call's input as JSON text; all deltas together are one JSON object."""

    partial_json: str


class ToolUseEnd(msgspec.Struct, tag=True):
    """The call is complete; `input` is what its deltas spell."""

    input: dict[str, Any]


class Finished(msgspec.Struct, tag=True):
    stop_reason: StopReason
    output_tokens: int
    stop_sequence: str | None = None
    # Of the output tokens, how many were thinking (counted where a budget applied).
    thinking_tokens: int | None = None


class Failed(msgspec.Struct, tag=True):
    """The generation failed; `error_type` names the error's class in the tree, and the server
    answers with that class's status on both the streamed and non-streamed path."""

    error_type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> Failed:
        """The event for an exception: a tree error keeps its type, anything else is a GenerationError."""
        if not isinstance(exc, PensieveError):
            exc = GenerationError(f"generation failed: {exc}")
        return cls(error_type=exc.error_type, message=exc.message)


GenerationEvent = (
    Started
    | PrefillProgress
    | TextDelta
    | ThinkingDelta
    | ThinkingEnd
    | ToolUseStart
    | ToolInputDelta
    | ToolUseEnd
    | Finished
    | Failed
)


class ModelCard(msgspec.Struct, kw_only=True):
    """What the server says about the model it serves."""

    id: str
    source: str
    context_length: int
    fallback_from: str | None = None
    note: str | None = None


class Engine(Protocol):
    """What the server needs of a model it serves; the composition root reaches nothing else."""

    @property
    def model(self) -> ModelCard: ...

    @property
    def degraded(self) -> str | None:
        """Why this model's generations keep failing (the last error), or None while it serves."""
        ...

    @property
    def active_generations(self) -> int:
        """This model's generations on the device now (prefilling, decoding or waiting for a slot)."""
        ...

    @property
    def weights_bytes(self) -> int:
        """Bytes of the loaded weights, for the memory limits."""
        ...

    async def limit_memory(self, wire_bytes: int) -> msgspec.Struct:
        """Cap the process's device memory, keeping `wire_bytes` of weights (all served models')
        resident where the device can; on the thread that owns the device. Says what it set."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events; closing the iterator early cancels the generation."""
        ...

    async def count_tokens(self, request: GenerationRequest) -> int: ...

    async def aclose(self) -> None: ...
