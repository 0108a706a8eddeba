"""Long prompts are prefilled here, a chunk per worker step, outside mlx-lm's BatchGenerator.

The generator prefills every new prompt together, so a short request that arrives during a
13K-token prefill waited for all of it. In the lane the batch's own work (decoding, short
prompts) comes first each step, the lane's chunk shrinks while others are served, and pauses
while a newcomer waits for its first token. A prompt leaves the lane with one token left, for
the batch to sample from. Worker thread only."""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import structlog

from pensieve_core import PrefillProgress

from .jobs import GenerationJob

log = structlog.get_logger("pensieve.inference")

# Prompts with more than this many tokens still to run go through the lane.
LANE_MIN_TOKENS = 512
# The lane's chunk while other sequences decode or wait: their next step waits for it.
SHARED_CHUNK = 256
# A long prefill logs how far it is at most this often (a 37K-token one takes minutes on a CPU);
# its event (for the status page) goes out after every chunk, with the worker turn's others.
PROGRESS_EVERY_S = 5.0


@dataclass
class Prefill:
    """One prompt on its way into the batch: `done` of its tokens are in `cache`."""

    job: GenerationJob
    cache: list[Any]
    done: int
    # Prompt lengths still to be reached where the prefix cache keeps a copy.
    boundaries: list[int]
    carry: Any = None  # what the batch keeps for this sequence meanwhile
    # When it entered the lane, and when it last said how far it is (time.monotonic()).
    entered: float = field(default_factory=time.monotonic)
    reported: float = field(default_factory=time.monotonic)


class PrefillLane:
    def __init__(self, model: Any, *, chunk: int) -> None:
        self._model = model
        self._chunk = chunk
        self._queue: deque[Prefill] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Prefill]:
        return iter(self._queue)

    def add(self, prefill: Prefill) -> None:
        self._queue.append(prefill)

    def drop(self, keep: Callable[[Prefill], bool]) -> list[Prefill]:
        """Take out the prefills `keep` refuses (cancelled ones), returned for their caches."""
        gone = [p for p in self._queue if not keep(p)]
        self._queue = deque(p for p in self._queue if keep(p))
        return gone

    def step(self, *, shared: bool, on_boundary: Callable[[Prefill, int], None]) -> Prefill | None:
        """Run one chunk of the first prompt; return it once only its last token is left.
        Raises what the model raises (the prefill is then the caller's to fail)."""
        if not self._queue:
            return None
        head = self._queue[0]
        prompt = head.job.prompt
        end = min(len(prompt) - 1, head.done + (min(self._chunk, SHARED_CHUNK) if shared else self._chunk))
        if head.boundaries and head.boundaries[0] <= end:
            end = head.boundaries.pop(0)  # stop exactly there, to keep a copy of the cache
            at_boundary = True
        else:
            at_boundary = False
        if end > head.done:
            started = time.perf_counter()
            self._model(mx.array(prompt[head.done : end])[None], cache=head.cache)
            mx.eval([c.state for c in head.cache])
            if head.job.prefix_cache is not None:  # what a restore from disk has to beat
                head.job.prefix_cache.speeds.prefilled(end - head.done, time.perf_counter() - started)
            head.done = end
            _report(head, len(prompt))
        if at_boundary:
            on_boundary(head, end)
        if head.done < len(prompt) - 1:
            return None
        return self._queue.popleft()

    def pop_failed(self) -> Prefill | None:
        return self._queue.popleft() if self._queue else None


def _report(prefill: Prefill, total: int) -> None:
    prefill.job.emit(PrefillProgress(done=prefill.done, total=total))
    now = time.monotonic()
    if now - prefill.reported < PROGRESS_EVERY_S:
        return
    prefill.reported = now
    elapsed = now - prefill.entered
    log.info(
        "prefill_progress",
        request_id=prefill.job.request_id,
        done=prefill.done,
        total=total,
        percent=round(100 * prefill.done / total, 1),
        seconds=round(elapsed, 1),
    )


def snapshot(cache: list[Any]) -> list[Any]:
    """A copy of a cache the lane goes on filling, for the prefix cache to keep."""
    return copy.deepcopy(cache)
