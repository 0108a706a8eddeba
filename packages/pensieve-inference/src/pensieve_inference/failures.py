"""What a failure inside the worker becomes: the request's Failed event (logged once, for
anything that is not one of our own errors), and the record that says a model whose batch
steps keep failing is degraded."""

from __future__ import annotations

import time
from collections import deque

import structlog

from pensieve_core import Failed
from pensieve_core.errors import PensieveError

log = structlog.get_logger("pensieve.inference")

# Failed steps within DEGRADED_WINDOW_S seconds, with no generation finished between, that
# make a model degraded.
DEGRADED_FAILURES = 3
DEGRADED_WINDOW_S = 300.0


def failure_event(exc: Exception, request_ids: list[str], *, logged: bool = False) -> Failed:
    if not isinstance(exc, PensieveError) and not logged:
        log.error("generation_failed", requests=request_ids, error=repr(exc), exc_info=exc)
    return Failed.of(exc)


class StepFailures:
    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=DEGRADED_FAILURES)
        self.last_error: str | None = None

    def record(self, exc: Exception) -> None:
        self._times.append(time.monotonic())
        self.last_error = repr(exc)

    def served(self) -> None:
        """A generation finished: the model serves again."""
        self._times.clear()

    @property
    def degraded(self) -> bool:
        window = time.monotonic() - DEGRADED_WINDOW_S
        return len(self._times) == DEGRADED_FAILURES and self._times[0] >= window
