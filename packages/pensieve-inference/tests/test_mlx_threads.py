"""A thread that ran MLX work is kept, never ended: MLX frees a thread's mx.compile cache as the
thread ends and takes the GIL to do it, which aborts the process when that lands during the
interpreter's exit (a closed engine, then exit at once)."""

import subprocess
import sys
import threading

from pensieve_inference.mlx_threads import MLXThread
from pensieve_inference.worker import GenerationWorker

# Thousands of compiled shapes make the ended thread's cache slow to free, so the main thread
# reaches finalization first: with threading.Thread this aborts about 7 runs in 10 (MLX 0.32).
COMPILES_THEN_EXITS = """
import mlx.core as mx
from pensieve_inference.mlx_threads import MLXThread

@mx.compile
def f(x):
    return x * 2 + 1

def work():
    for n in range(1, 3000):
        mx.eval(f(mx.ones((n,))))

thread = MLXThread(work, "compiles")
thread.start()
thread.join()
"""


def test_a_process_exits_cleanly_right_after_its_mlx_thread_ends():
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", COMPILES_THEN_EXITS], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]


def test_an_ended_thread_runs_the_next_work():
    seen: list[int] = []
    first = MLXThread(lambda: seen.append(threading.get_ident()), "first")
    first.start()
    first.join(10)
    assert not first.is_alive()
    second = MLXThread(lambda: seen.append(threading.get_ident()), "second")
    second.start()
    second.join(10)
    assert len(seen) == 2 and seen[0] == seen[1]


def test_a_failing_target_is_reported_and_its_thread_serves_on(monkeypatch):
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))

    def fails() -> None:
        raise RuntimeError("boom")

    failing = MLXThread(fails, "fails")
    failing.start()
    failing.join(10)
    assert [str(e) for e in reported] == ["boom"]
    after = MLXThread(lambda: None, "after")
    after.start()
    after.join(10)
    assert not after.is_alive()


def test_workers_one_after_another_share_a_thread():
    idents = []
    for _ in range(2):
        worker = GenerationWorker()
        idents.append(worker.call(threading.get_ident).result(timeout=10))
        worker.stop()
    assert idents[0] == idents[1]


def test_a_worker_not_started_is_not_alive():
    worker = GenerationWorker(thread=False)
    assert not worker._thread.is_alive()
    worker._thread.join(0.1)  # returns at once: nothing was started
