"""The one thread that runs MLX work. Tasks (loading, new requests) come in on a queue;
between them the thread steps each model's batch, so requests share decode steps."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import mlx.core as mx
import msgspec
import structlog

from pensieve_model_support import LoadedModel

from .batching import MAX_SEQUENCES, PREFILL_STEP, ModelBatch
from .jobs import GenerationJob, send_emitted

log = structlog.get_logger("pensieve.inference")


class GenerationWorker:
    def __init__(
        self, name: str = "pensieve-mlx", *, max_sequences: int = MAX_SEQUENCES, prefill_step: int = PREFILL_STEP
    ) -> None:
        self.max_sequences = max_sequences
        self.prefill_step = prefill_step
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._batches: dict[int, ModelBatch] = {}
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
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
            while self._take_tasks():
                send_emitted()
                for batch in list(self._batches.values()):
                    if len(batch):
                        self._step(batch)
                send_emitted()
        finally:
            for batch in self._batches.values():
                batch.close()
            self._batches.clear()
            mx.synchronize()  # leave no queued MLX work behind this thread

    @staticmethod
    def _step(batch: ModelBatch) -> None:
        try:
            batch.step()
        except Exception as exc:
            log.error("batch_failed", error=repr(exc), exc_info=exc)
            batch.fail_everything(exc)

    def health(self, model: Any) -> tuple[bool, str | None]:
        """Whether `model`'s batch keeps failing, and the last error it saw."""
        batch = self._batches.get(id(model))
        return (batch.failures.degraded, batch.failures.last_error) if batch is not None else (False, None)

    def _take_tasks(self) -> bool:
        """Run whatever tasks are waiting (blocking only when no batch has work); False on stop."""
        block = not any(len(b) for b in self._batches.values())
        while True:
            try:
                task = self._inbox.get(block=block)
            except queue.Empty:
                return True
            if task is None:
                return False
            task()
            block = False

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
        self._inbox.put(lambda: self._admit(loaded, job))

    def _admit(self, loaded: LoadedModel, job: GenerationJob) -> None:
        # Admission: the time in the inbox, behind the step or task the worker was running.
        job.phases = msgspec.structs.replace(job.phases, queue=(time.perf_counter() - job.submitted) * 1000)
        batch = self._batches.get(id(loaded.model))
        if batch is None:
            batch = ModelBatch(loaded, max_sequences=self.max_sequences, prefill_step=self.prefill_step)
            self._batches[id(loaded.model)] = batch
        try:
            batch.admit(job)
        except Exception as exc:  # noqa: BLE001 — this request fails; the batch goes on
            batch.fail_one(job, exc)

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=10)
