"""The one thread that runs MLX work. Jobs come in on a queue; typed events go back to the
event loop of whoever submitted them."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import structlog
from mlx_lm.generate import stream_generate
from mlx_lm.sample_utils import make_sampler

from pensieve_claude_types import StopReason
from pensieve_core import Failed, Finished, GenerationEvent, Started, TextDelta
from pensieve_core.errors import PensieveError
from pensieve_model_support import LoadedModel

from .prefix_cache import PrefixCache
from .stops import StopSequenceMatcher
from .tool_calls import ToolCallSplitter

log = structlog.get_logger("pensieve.inference")


@dataclass(kw_only=True)
class GenerationJob:
    """One request's work for the worker, and the way its events get back to the loop."""

    prompt: list[int]
    max_tokens: int
    sampler_args: dict[str, Any]
    stop_sequences: list[str] | None
    request_id: str
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[GenerationEvent]
    tool_calls: ToolCallSplitter | None = None
    single_tool_call: bool = False
    exhausted_reason: StopReason = "max_tokens"
    prefix_cache: PrefixCache | None = None
    cache_key: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: GenerationEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening
            self.cancelled.set()


class GenerationWorker:
    def __init__(self, name: str = "pensieve-mlx") -> None:
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        # Generations running now (0 or 1 until batching): a gauge for "idle again?".
        self.active_generations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (task := self._inbox.get()) is not None:
            task()
        mx.synchronize()  # leave no queued MLX work behind this thread

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run fn on the worker thread (for loading and other MLX work)."""
        future: Future[Any] = Future()

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)

        self._inbox.put(task)
        return future

    def submit(self, loaded: LoadedModel, job: GenerationJob) -> None:
        self._inbox.put(lambda: self._generate(loaded, job))

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=10)

    def _emit_text(self, job: GenerationJob, text: str) -> None:
        """Route visible text through the tool-call splitter, if the request offered tools."""
        if job.tool_calls is None:
            if text:
                job.emit(TextDelta(text=text))
            return
        for event in job.tool_calls.feed(text) if text else []:
            job.emit(event)

    def _generate(self, loaded: LoadedModel, job: GenerationJob) -> None:
        if job.cancelled.is_set():
            return
        self.active_generations += 1
        try:
            self._run_job(loaded, job)
        finally:
            self.active_generations -= 1

    def _run_job(self, loaded: LoadedModel, job: GenerationJob) -> None:
        stops = StopSequenceMatcher(job.stop_sequences)
        output_tokens = 0
        finish = None
        started = time.perf_counter()
        try:
            cache: list[Any] | None = None
            rest = job.prompt
            if job.prefix_cache is not None:
                cache, rest = job.prefix_cache.take(job.cache_key, loaded.model, job.prompt)
            reused = len(job.prompt) - len(rest)
            job.emit(Started(
                prompt_tokens=len(job.prompt),
                cache_read_tokens=reused,
                cache_creation_tokens=len(rest) if cache is not None else 0,
            ))
            generated: list[int] = []
            responses = stream_generate(
                loaded.model,
                loaded.tokenizer,
                rest,
                max_tokens=job.max_tokens,
                sampler=make_sampler(**job.sampler_args),
                prompt_cache=cache,
            )
            try:
                for response in responses:
                    generated.append(response.token)
                    output_tokens = response.generation_tokens
                    finish = response.finish_reason
                    self._emit_text(job, stops.feed(response.text))
                    if stops.matched is not None or job.cancelled.is_set():
                        break
                    if job.single_tool_call and job.tool_calls is not None and job.tool_calls.calls:
                        finish = "tool_call"
                        break
            finally:
                # MLX stream contexts must be closed on the thread that opened them.
                responses.close()
            if job.prefix_cache is not None and cache is not None:
                job.prefix_cache.put(job.cache_key, job.prompt + generated, cache)
        except PensieveError as exc:
            job.emit(Failed(error_type=exc.error_type, message=exc.message))
            return
        except Exception as exc:  # noqa: BLE001 — reported to the client as an api_error event
            log.exception("generation_failed", request_id=job.request_id)
            job.emit(Failed(error_type="api_error", message=f"generation failed: {exc}"))
            return
        if stops.matched is None:
            self._emit_text(job, stops.flush())
        if job.tool_calls is not None:
            for event in job.tool_calls.finish():
                job.emit(event)
        called = job.tool_calls is not None and job.tool_calls.calls > 0
        if stops.matched is not None:
            reason, sequence = "stop_sequence", stops.matched
        elif finish == "length":
            reason, sequence = job.exhausted_reason, None
        else:
            reason, sequence = ("tool_use" if called else "end_turn"), None
        elapsed = time.perf_counter() - started
        log.info(
            "generation",
            request_id=job.request_id,
            prompt_tokens=len(job.prompt),
            output_tokens=output_tokens,
            stop_reason=reason,
            seconds=round(elapsed, 3),
        )
        job.emit(Finished(stop_reason=reason, output_tokens=output_tokens, stop_sequence=sequence))
