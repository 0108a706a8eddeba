"""One request's work for the worker, and the way its events get back to the event loop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from pensieve_claude_types import StopReason
from pensieve_core import GenerationEvent, TextDelta

from .prefix_cache import PrefixCache
from .constrained import ToolConstraint
from .thinking import ThinkingBudget, ThinkingSplitter
from .tool_stream import ToolCallStream


@dataclass(kw_only=True)
class GenerationJob:
    prompt: list[int]
    max_tokens: int
    sampler_args: dict[str, Any]
    stop_sequences: list[str] | None
    request_id: str
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[GenerationEvent]
    # Prompt offsets at message boundaries: the prefix cache keeps a copy there.
    boundaries: tuple[int, ...] = ()
    # The boundary where the system prompt and tools end: that prefix is also kept on disk.
    system_end: int = 0
    tool_calls: ToolCallStream | None = None
    # Keeps tool calls valid (constrained decoding); one per sequence, it holds its state.
    constraint: ToolConstraint | None = None
    # A reasoning model's thinking, split from its answer; and its token budget, if any.
    thinking: ThinkingSplitter | None = None
    thinking_budget: ThinkingBudget | None = None
    exhausted_reason: StopReason = "max_tokens"
    prefix_cache: PrefixCache | None = None
    cache_key: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: GenerationEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening
            self.cancelled.set()

    def answer_text(self, text: str) -> str:
        """The answer part of new output text; the thinking part goes out as thinking events."""
        if self.thinking is None or self.thinking.state == "answer" and not self.thinking.buffer:
            return text
        events, answer = self.thinking.feed(text)
        for event in events:
            self.emit(event)
        return answer

    def finish_thinking(self) -> str:
        if self.thinking is None:
            return ""
        events, answer = self.thinking.finish()
        for event in events:
            self.emit(event)
        return answer

    def emit_text(self, text: str) -> None:
        """Visible text, through the tool-call splitter if the request offered tools."""
        if not text:
            return
        if self.tool_calls is None:
            self.emit(TextDelta(text=text))
            return
        for event in self.tool_calls.feed(text):
            self.emit(event)
