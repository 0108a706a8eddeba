"""POST /v1/messages (streamed and not) and POST /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pensieve_api_models import (
    CountTokensResponse,
    Ping,
    decode_count_tokens_request,
    decode_messages_request,
    encode_event,
)
from pensieve_core import Failed, Finished, GenerationEvent, Started, TextDelta, ThinkingDelta, ToolUseStart
from pensieve_core.errors import OverloadedError

from ..assembly import MessageAssembler
from ..errors import error_of_failed, request_id_of
from ..inflight import Outcome
from ..middleware import presented_key
from ..models import ServedModels
from ..shared_runs import Events, Listener, SharedRuns, run_key
from ..timing import RequestClock, server_timing

if TYPE_CHECKING:
    from ..app import Lifecycle

log = structlog.get_logger("pensieve.server")

_encoder = msgspec.json.Encoder()
SHUTTING_DOWN = "the server is shutting down"
SESSION_HEADER = "x-claude-code-session-id"


def _models(request: Request) -> ServedModels:
    models: ServedModels = request.app.state.models
    return models


class _EventStream(StreamingResponse):
    """Closes its event iterator however the response ends. Starlette abandons it when the
    client leaves mid-send, and the generation behind it would run until garbage collection."""

    def __init__(self, content: AsyncIterator[bytes], listener: Listener, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._listener = listener

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            body = self.body_iterator
            if hasattr(body, "aclose"):
                # Shielded: the disconnect cancelled this task, and the close must still run.
                await asyncio.shield(asyncio.ensure_future(body.aclose()))
            # A body never started never closes its listener: leave the run here too.
            await asyncio.shield(asyncio.ensure_future(self._listener.aclose()))


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(payload), status_code=status, media_type="application/json", headers=headers)


async def create_message(request: Request) -> Response:
    raw = await request.body()
    clock = RequestClock()
    body = decode_messages_request(raw)
    rid = request_id_of(request) or ""
    engine = _models(request).select(body.model)
    signer = request.app.state.signer
    signer.check(body.messages)
    runs: SharedRuns = request.app.state.runs
    # A resend of a request still running joins it: one prefill, the same events for both.
    # Only within a Claude Code session: identical bodies from other clients (a benchmark's
    # streams, best-of-n sampling) are independent requests.
    session = request.headers.get(SESSION_HEADER)
    key = run_key(raw, session, presented_key(request.headers)) if session else f"alone:{rid or id(request)}"
    live = request.app.state.metrics.live  # what the status page shows of it (inflight.py)
    events = runs.attach(key, lambda: _measured(request, live.watch(engine, body.to_generation(rid)), clock))
    if events.joined:
        request.app.state.metrics.joined_requests += 1
        log.info("request_joined", message_id=events.message_id)
    streaming = False
    try:
        # The first event comes after validation and templating: errors before it are still 4xx.
        first = await anext(events)
        if isinstance(first, Failed):  # nothing was sent yet: an ordinary error response
            raise error_of_failed(first)
        assembler = MessageAssembler(events.message_id, body.model, signer, display=body.thinking_display)
        if body.stream:
            streaming = True
            return _EventStream(
                _sse(assembler, first, events, request.app.state.keepalive_seconds, request.app.state.lifecycle),
                events,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", **reuse_header(first), **server_timing(first, clock)},
            )
        await _until_done_or_disconnected(request, _collect(assembler, first, events), assembler)
    finally:
        if not streaming:  # the stream leaves the run when it ends
            await asyncio.shield(asyncio.ensure_future(events.aclose()))
    if assembler.failed is not None:
        raise error_of_failed(assembler.failed)
    return _json(assembler.message, headers={**reuse_header(first), **server_timing(first, clock)})


def admit(request: Request) -> None:
    """Count a request in (its templating included), or 529 past the cap. Checked and counted
    with no await between, so concurrent requests cannot both slip in; the caller counts it out."""
    metrics, settings = request.app.state.metrics, request.app.state.settings
    if metrics.in_flight >= settings.max_concurrent_sequences + settings.max_queued_requests:
        raise OverloadedError(f"{metrics.in_flight} requests are already running or queued; retry shortly")
    metrics.in_flight += 1


def _note_reuse(metrics: Any, started: Started) -> None:
    if started.cache_read_tokens > 0:
        metrics.prefix_hits += 1
    elif started.reuse_ended_at is not None:
        metrics.prefix_misses += 1
    if started.reuse_ended_at is not None:
        log.info(
            "prefix_cache_reuse",
            read=started.cache_read_tokens,
            prompt_tokens=started.prompt_tokens,
            reuse_ended_at=started.reuse_ended_at,
            reuse_ended_in=started.reuse_ended_in,
        )


def reuse_header(started: GenerationEvent) -> dict[str, str]:
    """How much of the prompt the prefix cache served, and where reuse ended (docs/api.md)."""
    if not isinstance(started, Started):
        return {}
    value = f"read={started.cache_read_tokens}; prompt={started.prompt_tokens}"
    if started.reuse_ended_at is not None:
        value += f'; ended-at={started.reuse_ended_at}; ended-in="{started.reuse_ended_in}"'
    return {"pensieve-prefix-cache": value}


async def _measured(request: Request, events: AsyncIterator[GenerationEvent], clock: RequestClock) -> Events:
    """Pass events through, recording tokens, time to first token and decode rate, how the
    generation ended, and the request's phases (logged when it ends)."""
    metrics = request.app.state.metrics
    admit(request)
    metrics.generations += 1
    started = time.perf_counter()
    first_token: float | None = None
    outcome: Outcome = "cancelled"  # unless a Finished or Failed comes: the client left first
    try:
        async for event in events:
            clock.see(event)
            if isinstance(event, Started):
                metrics.prompt_started(prompt_tokens=event.prompt_tokens, cache_read_tokens=event.cache_read_tokens)
                _note_reuse(metrics, event)
            elif first_token is None and isinstance(event, (TextDelta, ThinkingDelta, ToolUseStart)):
                first_token = time.perf_counter()
            elif isinstance(event, Failed):
                outcome = "failed"
            elif isinstance(event, Finished):
                outcome = "finished"
                now = time.perf_counter()
                decode_s = now - first_token if first_token else 0.0
                metrics.generation_done(
                    output_tokens=event.output_tokens,
                    ttft_s=(first_token or now) - started,
                    decode_tps=(event.output_tokens - 1) / decode_s
                    if decode_s > 0 and event.output_tokens > 1
                    else None,
                )
            yield event
    except Exception:
        outcome = "failed"
        raise
    finally:
        metrics.in_flight -= 1
        metrics.generation_ended(outcome)
        clock.log()
        # Engine.generate promises an AsyncIterator; every engine's is an async generator.
        await cast(Events, events).aclose()


async def _collect(assembler: MessageAssembler, first: GenerationEvent, events: AsyncIterator[GenerationEvent]) -> None:
    for _ in assembler.feed(first):
        pass
    async for event in events:
        for _ in assembler.feed(event):
            pass


async def _until_done_or_disconnected(request: Request, work: Any, assembler: MessageAssembler) -> None:
    """Run a non-streamed generation, cancelling it if the client goes away (nothing keeps
    computing for nobody) or when shutdown cuts it (a 529, not a dropped connection)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                log_disconnect(assembler)
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    cut = request.app.state.lifecycle.until_cut()
    try:
        await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise OverloadedError(SHUTTING_DOWN)
        task.result()
    finally:
        task.cancel()
        watcher.cancel()
        cut.cancel()


def log_disconnect(assembler: MessageAssembler) -> None:
    """A client leaving (each Esc in Claude Code) is routine: one info line, no traceback."""
    u = assembler.message.usage
    prompt_tokens = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
    log.info("client_disconnected", prompt_tokens=prompt_tokens, output_deltas=assembler.deltas)


async def _sse(
    assembler: MessageAssembler,
    first: GenerationEvent,
    events: Listener,
    keepalive_seconds: float,
    lifecycle: Lifecycle,
) -> AsyncIterator[bytes]:
    """SSE bytes; a ping goes out whenever nothing was sent for keepalive_seconds (long
    prefills, whose progress events send nothing), and a failure after the 200, or the shutdown
    timeout, becomes one error event, then nothing. The events ready together go out in one
    write: under load (many streams, one event loop) that is one send per burst, not per token."""
    yield b"".join(encode_event(out) for out in assembler.feed(first)) + encode_event(Ping())
    sent = time.monotonic()
    loop = asyncio.get_running_loop()
    cut = lifecycle.until_cut()
    cut.add_done_callback(lambda _: events.wake())
    timer: asyncio.TimerHandle

    def tick() -> None:  # wakes the reader when a ping is due; one timer, not one per event
        nonlocal timer
        idle = time.monotonic() - sent
        if idle >= keepalive_seconds:
            events.wake()  # the ping goes out now: the next is due a whole period on
            idle = 0.0
        timer = loop.call_later(keepalive_seconds - idle, tick)

    timer = loop.call_later(keepalive_seconds, tick)
    ended = False
    try:
        while True:
            try:
                batch = await events.batch()
            except StopAsyncIteration:
                ended = True
                return
            except Exception as exc:
                ended = True
                log.exception("stream_failed")
                yield b"".join(encode_event(out) for out in assembler.feed(Failed.of(exc)))
                return
            chunk = bytearray()
            for event in batch:
                for out in assembler.feed(event):
                    chunk += encode_event(out)
                if assembler.failed is not None or assembler.message.stop_reason is not None:
                    ended = True
                    break
            if cut.done() and not ended:  # the shutdown timeout: this stream ends now
                ended = True
                for out in assembler.feed(Failed.of(OverloadedError(SHUTTING_DOWN))):
                    chunk += encode_event(out)
            elif not chunk and time.monotonic() - sent >= keepalive_seconds:
                chunk += encode_event(Ping())
            if chunk:
                yield bytes(chunk)
                sent = time.monotonic()
            if ended:
                return
    finally:
        timer.cancel()
        cut.cancel()
        if not ended:
            log_disconnect(assembler)
        # Shielded: a disconnect cancels this task, and the generation must still be stopped.
        await asyncio.shield(asyncio.ensure_future(events.aclose()))


async def count_tokens(request: Request) -> Response:
    body = decode_count_tokens_request(await request.body())
    engine = _models(request).select(body.model)
    admit(request)  # counting renders and tokenizes too: it shares the cap with generation
    try:
        tokens = await engine.count_tokens(body.to_generation(request_id_of(request) or ""))
    finally:
        request.app.state.metrics.in_flight -= 1
    return _json(CountTokensResponse(input_tokens=tokens))
