"""Threads for templating and tokenizing, few and bounded in time.

A request's chat template and tokenizer are CPU work of unbounded size: a template that loops,
or a huge body, would otherwise hold asyncio's shared thread pool for everyone. Each pool has
its own few threads (generation and count_tokens get separate ones, so neither waits behind
the other), and a render still running after `timeout_s` is stopped with an exception raised
in its thread (Python code stops at its next bytecode; a call into native code first returns)."""

from __future__ import annotations

import asyncio
import ctypes
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pensieve_core.errors import InvalidRequestError

T = TypeVar("T")

# Claude Code's ~20K-token prompts render and tokenize in well under a second on a CPU.
RENDER_TIMEOUT_S = 10.0


class RenderTimeout(Exception):
    """Raised inside a render thread whose job ran past its time."""


class _Job:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()
        self.thread: int | None = None  # the thread running it, while it runs
        self.lock = threading.Lock()


class RenderPool:
    def __init__(self, name: str, *, threads: int = 2, timeout_s: float = RENDER_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._inbox: queue.Queue[_Job] = queue.Queue()
        for i in range(threads):
            threading.Thread(target=self._serve, name=f"pensieve-{name}-{i}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self._run(self._inbox.get())
            except RenderTimeout:  # a stop meant for a job that had just finished: ignored
                continue

    @staticmethod
    def _run(job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        with job.lock:
            job.thread = threading.get_ident()
        try:
            result = job.fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the caller through the future
            with job.lock:
                job.thread = None
            job.future.set_exception(exc)
            return
        with job.lock:
            job.thread = None
        job.future.set_result(result)

    async def run(self, fn: Callable[[], T], what: str = "rendering the prompt") -> T:
        """fn() on a pool thread; past the time limit a 400 naming `what`."""
        job = _Job(fn)
        self._inbox.put(job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), self.timeout_s)
        except TimeoutError:
            self._stop(job)
            raise InvalidRequestError(f"{what} took longer than {self.timeout_s:g} s and was stopped") from None
        except RenderTimeout:
            raise InvalidRequestError(f"{what} took longer than {self.timeout_s:g} s and was stopped") from None
        finally:
            job.future.cancel()  # still queued: never started

    @staticmethod
    def _stop(job: _Job) -> None:
        with job.lock:
            if job.thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(job.thread), ctypes.py_object(RenderTimeout))
