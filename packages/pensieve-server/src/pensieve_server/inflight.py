"""The generations running now, each with its phase and tokens so far, and the last ones that
ended: what the status page lists. Timing and token counts only, never content."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Literal, cast

import msgspec

from pensieve_core import (
    Engine,
    Failed,
    Finished,
    GenerationEvent,
    GenerationRequest,
    PrefillProgress,
    Started,
    TextDelta,
    ThinkingDelta,
    ToolInputDelta,
    ToolUseStart,
)

if TYPE_CHECKING:
    from .metrics import TokenRing

RECENT = 20
# Queued: admitted, its prompt being rendered or waiting for a batch slot; prefill: on the
# worker, its prompt going in; decoding: its first token is out.
Phase = Literal["queued", "prefill", "decoding"]
Outcome = Literal["finished", "failed", "cancelled"]


class Running(msgspec.Struct, kw_only=True):
    request_id: str
    model: str
    phase: Phase
    age_s: float
    prompt_tokens: int | None  # known once it reaches the worker
    cache_read_tokens: int | None
    # In prefill, a long prompt's (the prefill lane's): its tokens in the cache so far, the
    # cached part included, and their share of the prompt (floored, 0.1 steps); else None.
    prefill_done: int | None
    prefill_percent: float | None
    output_tokens: int  # so far, counted by deltas (a delta is about one token)
    ttft_s: float | None


class Ended(msgspec.Struct, kw_only=True):
    request_id: str
    model: str
    outcome: Outcome  # cancelled: the client left before the end
    stop_reason: str | None
    error_type: str | None
    ago_s: float
    duration_s: float
    ttft_s: float | None
    prompt_tokens: int
    cache_read_tokens: int
    output_tokens: int
    decode_tokens_per_s: float | None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class Generation:
    """One generation as its events pass: `see` for each, then `end` once."""

    def __init__(self, live: LiveRequests, request_id: str, model: str) -> None:
        self._live = live
        self.request_id = request_id
        self.model = model
        self.admitted = time.monotonic()
        self.first_token: float | None = None
        self.started: Started | None = None
        self.progress: PrefillProgress | None = None
        self.deltas = 0
        self.finished: Finished | None = None
        self.failed: Failed | None = None

    def see(self, event: GenerationEvent) -> None:
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, PrefillProgress):
            self.progress = event
        elif isinstance(event, (TextDelta, ThinkingDelta, ToolUseStart, ToolInputDelta)):
            if self.first_token is None:
                self.first_token = time.monotonic()
                if self.started is not None:
                    self._live.rate.add(prefill=self.started.prompt_tokens - self.started.cache_read_tokens)
            self.deltas += 1
            self._live.rate.add(output=1)
        elif isinstance(event, Finished):
            self.finished = event
            # Deltas a marker held back or merged: the rate ends with the engine's own count.
            self._live.rate.add(output=max(0, event.output_tokens - self.deltas))
        elif isinstance(event, Failed):
            self.failed = event

    @property
    def phase(self) -> Phase:
        if self.first_token is not None:
            return "decoding"
        return "prefill" if self.started is not None else "queued"

    def running(self, now: float) -> Running:
        progress = self.progress if self.phase == "prefill" else None
        return Running(
            request_id=self.request_id,
            model=self.model,
            phase=self.phase,
            age_s=round(now - self.admitted, 1),
            prompt_tokens=self.started.prompt_tokens if self.started else None,
            cache_read_tokens=self.started.cache_read_tokens if self.started else None,
            prefill_done=progress.done if progress else None,
            prefill_percent=math.floor(1000 * progress.done / progress.total) / 10 if progress else None,
            output_tokens=self.deltas,
            ttft_s=_r(self.first_token - self.admitted if self.first_token else None),
        )

    def end(self) -> None:
        now = time.monotonic()
        output = self.finished.output_tokens if self.finished else self.deltas
        decode_s = now - self.first_token if self.first_token else 0.0
        outcome: Outcome = "finished" if self.finished else "failed" if self.failed else "cancelled"
        self._live.ended(
            now,
            Ended(
                request_id=self.request_id,
                model=self.model,
                outcome=outcome,
                stop_reason=self.finished.stop_reason if self.finished else None,
                error_type=self.failed.error_type if self.failed else None,
                ago_s=0.0,
                duration_s=round(now - self.admitted, 3),
                ttft_s=_r(self.first_token - self.admitted if self.first_token else None),
                prompt_tokens=self.started.prompt_tokens if self.started else 0,
                cache_read_tokens=self.started.cache_read_tokens if self.started else 0,
                output_tokens=output,
                decode_tokens_per_s=_r((output - 1) / decode_s, 1) if decode_s > 0 and output > 1 else None,
            ),
        )
        self._live.running.discard(self)


class LiveRequests:
    """Kept on the event loop, where the events pass: no locks."""

    def __init__(self, rate: TokenRing, keep: int = RECENT) -> None:
        self.rate = rate
        self.running: set[Generation] = set()
        self._recent: deque[tuple[float, Ended]] = deque(maxlen=keep)

    async def watch(self, engine: Engine, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """The engine's events for `request`, passed through and recorded; queued from the first read."""
        generation = Generation(self, request.request_id, engine.model.id)
        self.running.add(generation)
        events = engine.generate(request)
        try:
            async for event in events:
                generation.see(event)
                yield event
        finally:
            generation.end()
            # Engine.generate promises an AsyncIterator; every engine's is an async generator.
            await cast(AsyncGenerator[GenerationEvent, None], events).aclose()

    def ended(self, at: float, record: Ended) -> None:
        self._recent.append((at, record))

    def read(self) -> tuple[list[Running], list[Ended]]:
        """The running generations, oldest first, and the ended ones, newest first."""
        now = time.monotonic()
        running = [g.running(now) for g in sorted(self.running, key=lambda g: g.admitted)]
        recent = [msgspec.structs.replace(e, ago_s=round(now - at, 1)) for at, e in reversed(self._recent)]
        return running, recent
