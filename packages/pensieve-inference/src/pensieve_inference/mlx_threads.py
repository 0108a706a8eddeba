"""Threads for MLX work that never end: a finished one waits to run the next.

MLX keeps each thread's `mx.compile` cache in C++ thread-local storage, and its entries hold
Python objects. When a thread ends, that storage is destroyed after Python has let go of the
thread, and the destructor takes the GIL again; if the interpreter is finalizing by then, the
thread is made to exit inside the destructor and the process aborts ("terminate called without
an active exception"): an engine closed just before exit killed its process a few runs in a
hundred. So a thread that ran MLX work is kept and handed the next one (mlx-lm's server too keeps
one generation thread for the life of the process), and none ends while Python still runs."""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from collections.abc import Callable

# Threads whose work ended, waiting for more (as many as engines were once alive together); the
# last to end is the next to run, so one engine after another keeps to one thread.
_spare: deque[_Carrier] = deque()


class _Carrier:
    """One real thread, which runs MLXThreads' targets one after another, forever."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[MLXThread] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="pensieve-mlx-spare", daemon=True)
        self._thread.start()

    def give(self, work: MLXThread) -> None:
        self._work.put(work)

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            self._thread.name = work.name
            try:
                work.target()
            except BaseException:  # noqa: BLE001 — reported as threading reports a thread's exception
                exc_type, exc, tb = sys.exc_info()
                threading.excepthook(threading.ExceptHookArgs((exc_type, exc, tb, self._thread)))
            finally:
                self._thread.name = "pensieve-mlx-spare"
                _spare.append(self)
                work.ended.set()


class MLXThread:
    """threading.Thread's start/join/is_alive for a target that runs MLX work, on a kept thread."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.target = target
        self.name = name
        self.ended = threading.Event()
        self._started = False

    def start(self) -> None:
        self._started = True
        try:
            carrier = _spare.pop()
        except IndexError:
            carrier = _Carrier()
        carrier.give(self)

    def join(self, timeout: float | None = None) -> None:
        if self._started:
            self.ended.wait(timeout)

    def is_alive(self) -> bool:
        return self._started and not self.ended.is_set()
