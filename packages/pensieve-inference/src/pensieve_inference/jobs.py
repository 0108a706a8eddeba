"""One request's work for the worker, and the way its events get back to the event loop.

Events leave the worker thread together: a job keeps what one worker turn (a decode step, an
admission) emitted, and `send_emitted()` hands the turn's events of every job to their event
loop in one call, instead of one cross-thread call per token or per job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pensieve_claude_types import StopReason
from pensieve_core import Failed, Finished, GenerationEvent, Phases

from .kv_quant import KVQuantization
from .prefix_cache import PrefixCache
from .processors import SequenceProcessor
from .speculative import Speculation
from .thinking import ThinkingBudget, ThinkingSplitter
from .tool_stream import ToolCallStream

# Jobs with events not yet sent, per worker thread (tests run several engines, each its own).
_unsent = threading.local()
# A prefill stops at a message boundary (a forward pass and a cache copy of its own) only this
# many tokens past the last point the cache is kept: a shorter segment runs with the rest.
CUT_MIN_TOKENS = 512


@dataclass(kw_only=True)
class GenerationJob:
    prompt: list[int]
    max_tokens: int
    sampler_args: dict[str, Any]
    stop_sequences: list[str] | None
    request_id: str
    # Where its events go: a list per worker turn. None for a follower rank's copy (lockstep.py),
    # whose events nobody reads.
    loop: asyncio.AbstractEventLoop | None
    events: asyncio.Queue[list[GenerationEvent]] | None
    # Prompt offsets at message boundaries: the prefix cache may keep a copy there (`cuts`).
    boundaries: tuple[int, ...] = ()
    # The boundary where the system prompt and tools end: that prefix is also kept on disk.
    system_end: int = 0
    # Where the request's last cache_control breakpoint ends: usage counts creation up to there.
    cache_end: int = 0
    tool_calls: ToolCallStream | None = None
    # Keeps tool calls or a structured answer valid (constrained decoding); one per sequence,
    # it holds its state.
    constraint: SequenceProcessor | None = None
    # A reasoning model's thinking, split from its answer; and its token budget, if any.
    thinking: ThinkingSplitter | None = None
    thinking_budget: ThinkingBudget | None = None
    exhausted_reason: StopReason = "max_tokens"
    prefix_cache: PrefixCache | None = None
    cache_key: str = ""
    # How the sequence decodes when it is alone (None: plain generate_step).
    speculation: Speculation | None = None
    # Keys and values quantized (kv_bits): the model's requests then decode one at a time.
    kv_quantization: KVQuantization | None = None
    # The plan's phase times, then the worker's (admission, cache lookup): Started carries them.
    phases: Phases = field(default_factory=Phases)
    # When it was handed to the worker (time.perf_counter()).
    submitted: float = 0.0
    # Given a plain-text answer's ids when it ends on its own (end of turn), so that the next
    # turn's prompt takes them for its text (PromptEncoder.remember_answer).
    answered: Callable[[list[int]], object] | None = None
    # The client's wish to stop (any thread sets it); the worker acts on `dropped`, which it
    # sets from this at the start of its turn, so every rank of a distributed model drops it
    # at the same point (GenerationWorker).
    cancelled: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False
    # Finished or Failed was emitted: the worker forgets it.
    ended: bool = False
    # What a follower rank rebuilds this job from (FollowerSpec, msgpack); empty off a group.
    spec: bytes = b""
    _pending: list[GenerationEvent] = field(default_factory=list, init=False, repr=False)

    def cuts(self, done: int, end: int) -> list[int]:
        """The boundaries between `done` and `end` where the prefill stops to keep a copy of the
        cache: the end of the system prompt (shared by every conversation, persisted), and any
        other CUT_MIN_TOKENS past the last point kept. A request that diverges at a boundary
        passed by reads the point kept before it (or, from a trimmable cache, the whole turn's
        cache kept when generation ends), so it prefills fewer than CUT_MIN_TOKENS again."""
        cuts: list[int] = []
        for at in self.boundaries:
            if done < at < end and (at == self.system_end or at - (cuts[-1] if cuts else done) >= CUT_MIN_TOKENS):
                cuts.append(at)
        return cuts

    def fail_from_another_thread(self, exc: Exception) -> None:
        """When the worker thread is stuck (a hung rank): the client hears now, from here."""
        if self.ended or self.loop is None or self.events is None:
            return
        self.ended = True
        failed: list[GenerationEvent] = [Failed.of(exc)]
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, failed)
        except RuntimeError:  # the loop is gone: nobody is listening
            pass

    def part_of_prompt(self, at: int) -> str:
        """Where a prompt token lies, by the message boundaries the render found."""
        if at < self.system_end:
            return "system and tools"
        return "last message" if not self.boundaries or at >= self.boundaries[-1] else "conversation"

    def emit(self, event: GenerationEvent) -> None:
        """Worker thread only: kept until the worker's turn ends (`send_emitted`)."""
        if isinstance(event, (Finished, Failed)):
            self.ended = True
        if self.loop is None:
            return
        if not self._pending:
            unsent = getattr(_unsent, "jobs", None)
            if unsent is None:
                unsent = _unsent.jobs = []
            unsent.append(self)
        self._pending.append(event)

    def _take_pending(self) -> tuple[asyncio.Queue[list[GenerationEvent]], list[GenerationEvent]]:
        events, self._pending = self._pending, []
        assert self.events is not None  # emit keeps none without a queue
        return self.events, events


def _deliver(batch: list[tuple[asyncio.Queue[list[GenerationEvent]], list[GenerationEvent]]]) -> None:
    for queue, events in batch:
        queue.put_nowait(events)


def send_emitted() -> None:
    """Hand every job's events of this worker turn to its event loop: one cross-thread call per
    loop, not per job (each call wakes the loop through a socket, and 16 streams made 16 a step)."""
    unsent: list[GenerationJob] | None = getattr(_unsent, "jobs", None)
    if not unsent:
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[GenerationJob]] = {}
    for job in unsent:
        assert job.loop is not None  # emit keeps none without a loop
        by_loop.setdefault(job.loop, []).append(job)
    unsent.clear()
    for loop, jobs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, [job._take_pending() for job in jobs])
        except RuntimeError:  # the loop is gone: nobody is listening
            for job in jobs:
                job.cancelled.set()
