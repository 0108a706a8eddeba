"""Where one request's time went: the engine's phases (carried on Started) and what the server
sees after them (prefill: Started to the first output; ttft: the body read to the first output;
total: to the end), as a W3C Server-Timing header and one debug log line. Stamped once per
event kind, never per token."""

from __future__ import annotations

import time

import msgspec
import structlog

from pensieve_core import Failed, Finished, GenerationEvent, Started, TextDelta, ThinkingDelta, ToolUseStart

log = structlog.get_logger("pensieve.server")

HEADER = "server-timing"
_OUTPUT = (TextDelta, ThinkingDelta, ToolUseStart)


def _ms(seconds: float) -> float:
    return seconds * 1000


class RequestClock:
    """One generation's phase times, in milliseconds, in the order the request meets them."""

    def __init__(self) -> None:
        self.arrived = time.perf_counter()
        self.started: Started | None = None
        self.started_at: float | None = None
        self.first_output: float | None = None
        self.ended: float | None = None

    def see(self, event: GenerationEvent) -> None:
        if isinstance(event, Started):
            self.started, self.started_at = event, time.perf_counter()
        elif self.first_output is None and isinstance(event, _OUTPUT):
            self.first_output = time.perf_counter()
        elif isinstance(event, (Finished, Failed)):
            self.ended = time.perf_counter()

    def durations(self) -> dict[str, float]:
        """What is known so far: the engine's phases once started, prefill and ttft once the
        first output came, total once it ended."""
        if self.started is None or self.started_at is None:
            return {}
        out: dict[str, float] = msgspec.structs.asdict(self.started.phases)
        if self.first_output is not None:
            out["prefill"] = _ms(self.first_output - self.started_at)
            out["ttft"] = _ms(self.first_output - self.arrived)
        if self.ended is not None:
            out["total"] = _ms(self.ended - self.arrived)
        return out

    def log(self) -> None:
        durations = self.durations()
        if not durations or self.started is None:
            return
        log.debug(
            "request_phases",
            **{f"{name}_ms": round(ms, 3) for name, ms in durations.items()},
            prompt_tokens=self.started.prompt_tokens,
            cache_read_tokens=self.started.cache_read_tokens,
        )


def server_timing(first: GenerationEvent, clock: RequestClock) -> dict[str, str]:
    """The header: what the clock knows, or (a request that joined another's run, whose clock
    saw nothing) the phases its Started carries."""
    durations = clock.durations()
    if not durations and isinstance(first, Started):
        durations = msgspec.structs.asdict(first.phases)
    if not durations:
        return {}
    return {HEADER: ", ".join(f"{name};dur={ms:.2f}" for name, ms in durations.items())}
