"""The one thread that runs MLX work. Tasks (loading, new requests) come in on a queue;
between them the thread steps each model's batch, so requests share decode steps.

For a model sharded across processes, rank 0's worker shares what it takes in each turn and
the other ranks' workers `follow` it (lockstep.py)."""

from __future__ import annotations

import faulthandler
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import mlx.core as mx
import msgspec
import structlog
from mlx_lm.generate import generation_stream

from pensieve_core.errors import RankLostError
from pensieve_model_support import LoadedModel

from .batching import MAX_SEQUENCES, PREFILL_STEP, ModelBatch
from .failures import failure_event
from .jobs import GenerationJob, send_emitted
from .lockstep import Lockstep, Turn, Watch
from .mlx_threads import MLXThread

log = structlog.get_logger("pensieve.inference")

# An idle rank 0 still shares an empty turn this often, so a lost rank is noticed while idle.
HEARTBEAT_S = 1.0


class _RankZeroWatch:
    """A follower waits in rank 0's collective at every turn; rank 0 shares one at least every
    HEARTBEAT_S, so a wait past the rank timeout means rank 0 hung (or its host went away) and
    this rank ends instead of holding its shard forever. The wait holds the GIL, so the timer
    is faulthandler's, which exits from a C thread (after dumping the stacks)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = max(timeout_s, 4 * HEARTBEAT_S)
        self._armed_at = 0.0

    def __enter__(self) -> _RankZeroWatch:
        return self

    def heard(self) -> None:
        now = time.monotonic()
        if now - self._armed_at >= HEARTBEAT_S:  # re-armed about once a heartbeat, not every turn
            faulthandler.dump_traceback_later(self.timeout_s, exit=True)
            self._armed_at = now

    def __exit__(self, *exc: object) -> None:
        faulthandler.cancel_dump_traceback_later()


class _Admission:
    """A new request in the inbox: the job, and the bytes a follower rank rebuilds it from."""

    def __init__(self, loaded: LoadedModel, job: GenerationJob) -> None:
        self.loaded = loaded
        self.job = job


class GenerationWorker:
    def __init__(
        self,
        name: str = "pensieve-mlx",
        *,
        max_sequences: int = MAX_SEQUENCES,
        prefill_step: int = PREFILL_STEP,
        thread: bool = True,
    ) -> None:
        self.max_sequences = max_sequences
        self.prefill_step = prefill_step
        self._inbox: queue.Queue[Callable[[], None] | _Admission | None] = queue.Queue()
        self._batches: dict[int, ModelBatch] = {}
        # Requests admitted and not yet ended, by admission number (the same on every rank).
        self._live: dict[int, GenerationJob] = {}
        self._admitted = 0
        self._lockstep: Lockstep | None = None
        self._digest: list[int] = []
        self._watch = Watch()
        # Why the distributed group cannot serve (a rank died, hung or drifted); None while it can.
        self.group_lost: str | None = None
        self._thread = MLXThread(self._run, name)
        if thread:
            self._thread.start()

    @property
    def active_generations(self) -> int:
        """Sequences in the batches now (prefilling, decoding or waiting for a slot)."""
        # Read from other threads: a copy, since the worker may add a model's batch meanwhile.
        return sum(len(b) for b in self._batches.copy().values())

    def generations(self, model: Any) -> int:
        """Sequences in `model`'s batch now: what one engine of several on this worker runs."""
        batch = self._batches.get(id(model))
        return len(batch) if batch is not None else 0

    def _run(self) -> None:
        try:
            self._loop()
            if self._lockstep is not None:
                self._lead()
        finally:
            self._close()

    def _loop(self) -> None:
        while self._take_tasks():
            send_emitted()
            self._step_batches()
            send_emitted()
            if self._lockstep is not None and not self._lockstep.started:
                return  # rank 0 of a group from here on: see _lead

    def join(self, lockstep: Lockstep) -> Future[Any]:
        """Rank 0 of a distributed model from its next turn on (once every rank has its shard)."""
        return self.call(lambda: setattr(self, "_lockstep", lockstep))

    def _lead(self) -> None:
        lockstep = self._lockstep
        assert lockstep is not None
        lockstep.started = True
        threading.Thread(target=self._watchdog, name="pensieve-ranks", daemon=True).start()
        try:
            with mx.stream(generation_stream):  # one stream: every rank's collectives in one order
                self._loop()
            return
        except Exception as exc:  # noqa: BLE001 — a rank is gone: the group fails, rank 0 answers
            self._lose_group(f"a rank of the distributed model was lost ({exc})")
        while True:  # no group any more: every request gets the reason
            for task in self._waiting(block=True):
                if task is None:
                    return
                if isinstance(task, _Admission):
                    self._admit(task.loaded, task.job)
                else:
                    task()
            send_emitted()

    def follow(self, lockstep: Lockstep, loaded: LoadedModel, rebuild: Callable[[bytes], GenerationJob]) -> None:
        """A rank other than 0, on the calling thread: apply rank 0's turns until it stops.
        Raises RankLostError if this rank's batches drift from rank 0's."""
        self._lockstep = lockstep
        lockstep.started = True
        with mx.stream(generation_stream), _RankZeroWatch(lockstep.rank_timeout_s) as watch:
            while True:
                watch.heard()
                turn = msgspec.msgpack.decode(lockstep.share(None), type=Turn)
                if turn.digest != self._digest:
                    raise RankLostError(f"rank {lockstep.rank} drifted from rank 0: {self._digest} != {turn.digest}")
                admitted = []
                for spec in turn.admit:
                    self._admitted += 1
                    self._live[self._admitted] = job = rebuild(spec)
                    admitted.append(job)
                self._drop(turn.cancel)
                if turn.stop:
                    return
                for job in admitted:
                    self._admit(loaded, job)
                self._step_batches()
                send_emitted()

    def _lose_group(self, reason: str) -> None:
        """Every request here fails with the reason, and every later one (rank 0)."""
        if self.group_lost is None:
            self.group_lost = reason
            log.error("ranks_lost", reason=reason)
        failed = failure_event(RankLostError(reason), [], logged=True)
        for job in self._live.values():
            if not job.ended:
                job.emit(failed)
        self._live.clear()
        send_emitted()
        self._batches.clear()  # their caches and generators belong to the lost group

    def _watchdog(self) -> None:
        """A turn that runs past the group's timeout: a rank hangs (a dead one fails the turn).
        The worker thread stays stuck in the collective, so from then on this thread answers."""
        lockstep = self._lockstep
        assert lockstep is not None
        while self._thread.is_alive() and self.group_lost is None:
            time.sleep(min(1.0, lockstep.rank_timeout_s / 4))
            stuck = self._watch.stuck_for()
            if stuck > lockstep.rank_timeout_s and self.group_lost is None:
                self.group_lost = f"a rank of the distributed model stopped answering ({stuck:.0f} s in one turn)"
                log.error("ranks_lost", reason=self.group_lost)
                lost = RankLostError(self.group_lost)
                while self._thread.is_alive() and self._watch.turn_began is not None:
                    for job in list(self._live.values()):
                        job.fail_from_another_thread(lost)
                    self._fail_waiting(lost)
                    time.sleep(0.2)

    def _fail_waiting(self, lost: RankLostError) -> None:
        """The inbox of a stuck worker: requests get the reason, a stop is put back."""
        stop = False
        while True:
            try:
                task = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(task, _Admission):
                task.job.fail_from_another_thread(lost)
            elif task is None:
                stop = True
        if stop:
            self._inbox.put(None)

    def _step_batches(self) -> None:
        for batch in list(self._batches.values()):
            if len(batch):
                self._step(batch)
        if self._lockstep is not None:
            self._digest = [n for b in self._batches.values() for n in b.digest()]

    def _close(self) -> None:
        for batch in self._batches.values():
            batch.close()
        self._batches.clear()
        mx.synchronize()  # leave no queued MLX work behind this thread

    def _step(self, batch: ModelBatch) -> None:
        try:
            batch.step()
        except Exception as exc:
            if self._lockstep is not None:
                raise  # the other ranks did not fail here: the group cannot go on
            log.error("batch_failed", error=repr(exc), exc_info=exc)
            batch.fail_everything(exc)

    def health(self, model: Any) -> tuple[bool, str | None]:
        """Whether `model`'s batch keeps failing, and the last error it saw."""
        if self.group_lost is not None:
            return True, self.group_lost
        batch = self._batches.get(id(model))
        return (batch.failures.degraded, batch.failures.last_error) if batch is not None else (False, None)

    def _take_tasks(self) -> bool:
        """Run whatever tasks are waiting (blocking only when no batch has work); False on stop.
        Rank 0 of a group shares what it took first, with the cancellations it saw."""
        tasks = self._waiting(block=not any(len(b) for b in self._batches.values()))
        self._watch.begin()
        admissions = [t for t in tasks if isinstance(t, _Admission)]
        for admission in admissions:
            self._admitted += 1
            self._live[self._admitted] = admission.job
        cancel = [n for n, job in self._live.items() if job.cancelled.is_set()]
        if self._lockstep is not None and self._lockstep.started:
            turn = Turn(admit=[a.job.spec for a in admissions], cancel=cancel, stop=None in tasks, digest=self._digest)
            self._lockstep.share(msgspec.msgpack.encode(turn))
        self._drop(cancel)
        for task in tasks:
            if task is None:
                return False
            if isinstance(task, _Admission):
                self._admit(task.loaded, task.job)
            else:
                task()
        return True

    def _waiting(self, *, block: bool) -> list[Callable[[], None] | _Admission | None]:
        """The tasks in the inbox: at least one if `block` (rank 0 of a group waits a heartbeat)."""
        tasks: list[Callable[[], None] | _Admission | None] = []
        timeout = HEARTBEAT_S if self._lockstep is not None and self.group_lost is None else None
        self._watch.idle()
        while True:
            try:
                tasks.append(self._inbox.get(block=block, timeout=timeout if block else None))
            except queue.Empty:
                return tasks
            block = False

    def _drop(self, cancel: list[int]) -> None:
        for n in cancel:
            self._live[n].dropped = True
        for n in [n for n, job in self._live.items() if job.ended or job.dropped]:
            del self._live[n]

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run fn on the worker thread (for loading and other MLX work)."""
        future: Future[Any] = Future()

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 — handed to the caller through the future
                future.set_exception(exc)

        self._inbox.put(task)
        return future

    def submit(self, loaded: LoadedModel, job: GenerationJob) -> None:
        job.submitted = time.perf_counter()
        self._inbox.put(_Admission(loaded, job))

    def _admit(self, loaded: LoadedModel, job: GenerationJob) -> None:
        # Admission: the time in the inbox, behind the step or task the worker was running.
        job.phases = msgspec.structs.replace(job.phases, queue=(time.perf_counter() - job.submitted) * 1000)
        if self.group_lost is not None:
            job.emit(failure_event(RankLostError(self.group_lost), [job.request_id]))
            return
        batch = self._batches.get(id(loaded.model))
        if batch is None:
            # A model's jobs all carry its engine's cache quantization: the first one's sets it.
            batch = ModelBatch(
                loaded,
                max_sequences=self.max_sequences,
                prefill_step=self.prefill_step,
                lockstep=self._lockstep,
                kv=job.kv_quantization,
            )
            self._batches[id(loaded.model)] = batch
        try:
            batch.admit(job)
        except Exception as exc:  # this request fails; the batch goes on
            if self._lockstep is not None:
                raise
            batch.fail_one(job, exc)

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=10)
