"""A resend attaches, never doubles: Claude Code sends the same request again when no byte has
come for about 300 s, and the copy joins the generation still running (one prefill, the same
events for both clients) instead of starting a second one."""

import asyncio
import time

import httpx2 as httpx
from server_process import sse_events

KEY = {"x-api-key": "pensieve-local-key"}
# A long prompt and answer keep the first request running while the resend arrives.
PROMPT = "Tell me everything about the history of rivers and mountains. " * 120


def body(stream=True, text=PROMPT):
    return {
        "model": "tiny",
        "max_tokens": 300,
        "temperature": 0,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }


def session(name):
    return {**KEY, "x-claude-code-session-id": name}


def counter(server, name) -> float:
    text = httpx.get(server.url + "/metrics", headers=KEY, timeout=10).text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


def counters(server) -> dict[str, float]:
    names = ("pensieve_generations_total", "pensieve_joined_requests_total", "pensieve_output_tokens_total")
    return {name: counter(server, name) for name in names}


class Stream:
    """A streamed request read by hand: `until` a marker, then to its end or until left."""

    def __init__(self, client, url, headers, payload) -> None:
        self._cm = client.stream("POST", url + "/v1/messages", headers=headers, json=payload)
        self.raw = ""
        self.headers = None

    async def open(self):
        response = await self._cm.__aenter__()
        assert response.status_code == 200, await response.aread()
        self.headers, self._chunks = response.headers, response.aiter_text()
        return self

    async def until(self, marker):
        while marker not in self.raw:
            self.raw += await anext(self._chunks)
        return self

    async def finish(self):
        async for chunk in self._chunks:
            self.raw += chunk
        await self.leave()
        return self.events()

    async def leave(self):
        await self._cm.__aexit__(None, None, None)

    def events(self):
        return [e for e in sse_events(self.raw) if e["type"] != "ping"]


async def running(client, server, name, payload=None):
    """A stream of `payload` under session `name`, read until its first delta (so it is running)."""
    opened = await Stream(client, server.url, session(name), payload or body()).open()
    return await opened.until("content_block_delta")


def message_id(events):
    return events[0]["message"]["id"]


def text_of(events):
    return "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")


def test_an_identical_resend_joins_the_running_generation(server):
    before = counters(server)

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            first = await running(client, server, "s-join")
            second = await Stream(client, server.url, session("s-join"), body()).open()
            return first, second, *await asyncio.gather(first.finish(), second.finish())

    first, second, one, other = asyncio.run(run())
    assert one == other  # the late joiner got every event from message_start on
    assert one[0]["type"] == "message_start" and one[-1]["type"] == "message_stop"
    assert text_of(one)
    assert first.headers["request-id"] != second.headers["request-id"]
    assert "event: ping" in first.raw and "event: ping" in second.raw  # each listener has its keep-alive
    after = counters(server)
    answer_tokens = one[-2]["usage"]["output_tokens"]
    assert after["pensieve_generations_total"] - before["pensieve_generations_total"] == 1
    assert after["pensieve_joined_requests_total"] - before["pensieve_joined_requests_total"] == 1
    assert after["pensieve_output_tokens_total"] - before["pensieve_output_tokens_total"] == answer_tokens


def test_a_non_streamed_resend_joins_a_streamed_run_and_gets_the_same_message(server):
    before = counters(server)

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            first = await running(client, server, "s-mixed")
            collected = client.post(server.url + "/v1/messages", headers=session("s-mixed"), json=body(stream=False))
            streamed, message = await asyncio.gather(first.finish(), collected)
            return streamed, message.json()

    streamed, message = asyncio.run(run())
    assert message["id"] == message_id(streamed)
    assert message["content"][0]["text"] == text_of(streamed)
    assert counters(server)["pensieve_generations_total"] - before["pensieve_generations_total"] == 1


def test_another_session_or_another_body_does_not_join(server):
    before = counters(server)

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            first = await running(client, server, "s-a")
            others = [
                await Stream(client, server.url, session("s-b"), body()).open(),
                await Stream(client, server.url, session("s-a"), body(text=PROMPT + "!")).open(),
            ]
            return await asyncio.gather(first.finish(), *(s.finish() for s in others))

    answers = asyncio.run(run())
    assert len({message_id(events) for events in answers}) == 3
    after = counters(server)
    assert after["pensieve_generations_total"] - before["pensieve_generations_total"] == 3
    assert after["pensieve_joined_requests_total"] == before["pensieve_joined_requests_total"]


def test_the_first_client_leaving_does_not_stop_the_second(server):
    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            first = await running(client, server, "s-leave")
            second = await running(client, server, "s-leave")
            await first.leave()
            return first.events(), await second.finish()

    left, stayed = asyncio.run(run())
    assert message_id(stayed) == message_id(left)
    assert stayed[-1]["type"] == "message_stop" and stayed[-2]["delta"]["stop_reason"] is not None
    assert text_of(stayed).startswith(text_of(left))


def test_both_clients_leaving_stops_the_generation(server):
    before = counters(server)

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            first = await running(client, server, "s-gone")
            second = await running(client, server, "s-gone")
            await first.leave()
            await second.leave()

    asyncio.run(run())
    left = time.monotonic()
    while counter(server, "pensieve_active_generations") and time.monotonic() - left < 5:
        time.sleep(0.05)
    assert counter(server, "pensieve_active_generations") == 0
    assert time.monotonic() - left < 1.5
    assert counter(server, "pensieve_requests_in_flight") == 0
    assert counter(server, "pensieve_joined_requests_total") - before["pensieve_joined_requests_total"] == 1
