"""What a ModelBatch does when a step or one sequence's handling fails: a failed step starts
its sequences over in a fresh generator (a second failure fails them), a failure in one
sequence's handling fails that sequence only, and a failure outside any sequence fails
everything. failures.py holds the bookkeeping (the Failed event, the degraded record).
Worker thread only."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import structlog

from pensieve_core.errors import InvalidRequestError

from .failures import StepFailures, failure_event
from .jobs import GenerationJob
from .sampling import GuardedSampler
from .solo import Solo

log = structlog.get_logger("pensieve.inference")


class RetriedSequence(Protocol):
    """What recovery reads and marks on a sequence of the batch."""

    job: GenerationJob
    output_tokens: int
    generated: list[int]
    sampler: Any
    strikes: int


Seq = TypeVar("Seq", bound=RetriedSequence)


class RecoverableBatch(Protocol[Seq]):
    """What recovery needs of a ModelBatch: its sequences, a way to put one back in, to stop
    stepping one, to start the generator over, and to empty itself."""

    failures: StepFailures

    @property
    def running(self) -> dict[int, Seq]:
        """The sequences decoding (alone or in the batch), by uid."""
        ...

    def enter(self, seq: Seq, tokens: list[int]) -> int: ...

    def stop_stepping(self, uid: int) -> None: ...

    def restart_generator(self) -> None: ...

    def jobs(self) -> list[GenerationJob]: ...

    def empty(self) -> None: ...


def recover_failed_step(batch: RecoverableBatch[Seq], exc: Exception) -> None:
    """A batch step raised: its generator cannot be trusted again. Every sequence in it
    starts over in a fresh one from its prompt and what it has said (the prefix cache
    holds most of that); one that was in a failed step before fails now."""
    batch.failures.record(exc)
    seqs = list(batch.running.values())
    log.error("batch_step_failed", requests=[s.job.request_id for s in seqs], error=repr(exc), exc_info=exc)
    batch.running.clear()
    batch.restart_generator()
    failed = failure_event(exc, [], logged=True)
    for seq in seqs:
        seq.strikes += 1
        if seq.strikes > 1 or seq.output_tokens >= seq.job.max_tokens:
            seq.job.emit(failed)
            continue
        _start_over(batch, seq)


def retry_failed_solo(batch: RecoverableBatch[Seq], solo: Solo, exc: Exception) -> None:
    """As a failed batch step does: the lone sequence starts over once from its prompt and
    what it has said (the prefix cache holds most of that); a second failure fails it."""
    seq = batch.running.get(solo.uid)
    if seq is None or seq.strikes > 0 or seq.output_tokens >= seq.job.max_tokens:
        fail_sequence(batch, solo.uid, exc, seq=seq)
        return
    log.error("solo_step_failed", requests=[seq.job.request_id], error=repr(exc), exc_info=exc)
    batch.stop_stepping(solo.uid)
    del batch.running[solo.uid]
    seq.strikes += 1
    _start_over(batch, seq)


def _start_over(batch: RecoverableBatch[Seq], seq: Seq) -> None:
    try:
        batch.enter(seq, seq.job.prompt + seq.generated)
    except Exception as again:  # noqa: BLE001
        seq.job.emit(failure_event(again, [seq.job.request_id]))


def guarded(batch: RecoverableBatch[Seq], uid: int, fn: Any, *args: Any) -> None:
    """Our own handling of one sequence's output: a failure there fails that sequence only."""
    seq = batch.running.get(uid)
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 — reported to this request; the batch goes on
        fail_sequence(batch, uid, exc, seq=seq)


def fail_sequence(batch: RecoverableBatch[Seq], uid: int, exc: Exception, *, seq: Seq | None = None) -> None:
    """Fail one sequence, wherever it is (it may have left the batch already)."""
    seq = batch.running.pop(uid, None) or seq
    batch.stop_stepping(uid)
    if seq is not None:
        seq.job.emit(failure_event(exc, [seq.job.request_id]))


def fail_broken_samplers(batch: RecoverableBatch[Seq]) -> None:
    for uid, seq in list(batch.running.items()):
        if isinstance(seq.sampler, GuardedSampler) and seq.sampler.error is not None:
            error = InvalidRequestError(f"sampling failed for this request's sampling values: {seq.sampler.error}")
            fail_sequence(batch, uid, error)


def fail_everything(batch: RecoverableBatch[Seq], exc: Exception) -> None:
    """Our own code failed outside any one sequence's handling: every request here fails,
    and the batch starts over empty with a fresh generator."""
    batch.failures.record(exc)
    jobs = batch.jobs()
    failed = failure_event(exc, [j.request_id for j in jobs])
    batch.empty()
    for job in jobs:
        job.emit(failed)
