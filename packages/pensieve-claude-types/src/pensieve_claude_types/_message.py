"""The assistant Message a response returns, its usage and stop reasons."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._blocks import ContentBlock

StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]


class Usage(msgspec.Struct):
    """Total input = input_tokens + cache_creation_input_tokens + cache_read_input_tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    model: str
    content: list[ContentBlock]
    usage: Usage
    role: Literal["assistant"] = "assistant"
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
