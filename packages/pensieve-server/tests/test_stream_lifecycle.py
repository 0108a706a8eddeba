"""A stream's end, however it comes: cut by the shutdown timeout (one overloaded_error event),
or abandoned by its client mid-step (the generation is closed, one info line, no error); and its
pings while a long prefill sends nothing."""

import asyncio
import json

from structlog.testing import capture_logs

from pensieve_core import Finished, PrefillProgress, Started, TextDelta
from pensieve_server.app import Lifecycle
from pensieve_server.assembly import MessageAssembler
from pensieve_server.middleware import RequestIdMiddleware
from pensieve_server.routes.messages import _sse
from pensieve_server.shared_runs import Listener, SharedRuns


def _events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def _listen(events) -> Listener:
    """The engine's events as a response reads them: through a run (its own task and queue)."""
    return SharedRuns().attach("k", lambda: events)


class Endless:
    """An engine's event stream that never finishes by itself; records that it was closed."""

    def __init__(self, stall: bool = False) -> None:
        self.stall = stall
        self.closed = False

    async def __call__(self):
        try:
            while True:
                await asyncio.sleep(3600 if self.stall else 0.005)
                yield TextDelta(text="la ")
        finally:
            self.closed = True


def test_a_stream_still_running_at_the_shutdown_timeout_ends_with_one_overloaded_error():
    async def run() -> tuple[bytes, Endless]:
        lifecycle, engine = Lifecycle(), Endless()
        out = b""
        async for chunk in _sse(
            MessageAssembler("msg_1", "m"), Started(prompt_tokens=3), _listen(engine()), 10.0, lifecycle
        ):
            out += chunk
            if b"content_block_delta" in out and not lifecycle.draining:
                lifecycle.drain(0.05)
        return out, engine

    raw, engine = asyncio.run(run())
    types = [e["type"] for e in _events(raw)]
    assert types.count("error") == 1 and types[-1] == "error" and "message_stop" not in types
    assert _events(raw)[-1]["error"] == {"type": "overloaded_error", "message": "the server is shutting down"}
    assert engine.closed


def test_a_client_leaving_mid_step_closes_the_generation_and_logs_one_info_line():
    async def run() -> Endless:
        engine = Endless(stall=True)
        stream = _sse(MessageAssembler("msg_1", "m"), Started(prompt_tokens=3), _listen(engine()), 10.0, Lifecycle())

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)  # now waiting on the engine's next event
        task.cancel()  # what a disconnect does to the response task
        try:
            await task
        except asyncio.CancelledError:
            pass  # anything else (before: "aclose(): asynchronous generator is already running") fails
        await asyncio.sleep(0.05)
        return engine

    with capture_logs() as logs:
        engine = asyncio.run(run())
    assert engine.closed
    assert [(e["event"], e["log_level"]) for e in logs] == [("client_disconnected", "info")]


def test_a_client_leaving_during_the_body_is_one_info_line():
    from starlette.requests import Request

    async def app(scope, receive, send):
        await Request(scope, receive).body()

    async def receive():
        return {"type": "http.disconnect"}

    async def send(_message):
        pass

    scope = {"type": "http", "method": "POST", "path": "/v1/messages", "headers": []}
    with capture_logs() as logs:
        asyncio.run(RequestIdMiddleware(app)(scope, receive, send))
    assert [(e["event"], e["log_level"]) for e in logs] == [("client_disconnected", "info"), ("request", "info")]
    assert all("exc_info" not in e for e in logs)


def test_pings_go_out_while_prefill_progress_sends_nothing():
    """Progress comes every 10 ms, the client sees none of it: a ping still goes out every 0.1 s."""

    async def prefill():
        for done in range(1, 41):
            await asyncio.sleep(0.01)
            yield PrefillProgress(done=done, total=41)
        yield Finished(stop_reason="end_turn", output_tokens=0)

    async def run() -> bytes:
        return b"".join(
            [
                c
                async for c in _sse(
                    MessageAssembler("m", "m"), Started(prompt_tokens=41), _listen(prefill()), 0.1, Lifecycle()
                )
            ]
        )

    types = [e["type"] for e in _events(asyncio.run(run()))]
    assert types[:2] == ["message_start", "ping"] and types[-2:] == ["message_delta", "message_stop"]
    assert types.count("ping") >= 3, types
