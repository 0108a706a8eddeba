"""The registry of running generations: a joiner gets every event from the start, one client
leaving leaves the run to the others, the last one leaving stops it, and runs join only on the
same body, session and key."""

import asyncio

import pytest

from pensieve_core import Finished, Started, TextDelta
from pensieve_core.errors import OverloadedError
from pensieve_server.shared_runs import SharedRuns, run_key


class Source:
    """A generation that says `words`, one each time `step` is set, and records how it ended."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.step = asyncio.Event()
        self.closed = False
        self.started = 0

    async def __call__(self):
        self.started += 1
        try:
            yield Started(prompt_tokens=3)
            for word in self.words:
                await self.step.wait()
                self.step.clear()
                yield TextDelta(text=word)
            yield Finished(stop_reason="end_turn", output_tokens=len(self.words))
        finally:
            self.closed = True


async def _drain(listener) -> list:
    return [event async for event in listener]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_late_joiner_gets_the_whole_run_from_its_start_and_one_generation_runs():
    async def run():
        runs, source = SharedRuns(), Source(["a", "b", "c"])
        first = runs.attach("k", source)
        assert isinstance(await anext(first), Started)
        source.step.set()
        assert await anext(first) == TextDelta(text="a")
        second = runs.attach("k", source)
        assert (first.joined, second.joined) == (False, True) and first.message_id == second.message_id
        rest = asyncio.ensure_future(_drain(first))
        for _ in range(2):
            await _settle()
            source.step.set()
        return await rest, await _drain(second), source, runs

    rest, joined, source, runs = asyncio.run(run())
    assert joined == [
        Started(prompt_tokens=3),
        *(TextDelta(text=w) for w in "abc"),
        Finished(stop_reason="end_turn", output_tokens=3),
    ]
    assert rest == joined[2:]
    assert source.started == 1 and source.closed and len(runs) == 0


def test_the_run_goes_on_while_one_listener_remains_and_stops_when_the_last_leaves():
    async def run():
        runs, source = SharedRuns(), Source(["a", "b"])
        first, second = runs.attach("k", source), runs.attach("k", source)
        await anext(first)
        await first.aclose()
        assert not source.closed and len(runs) == 1
        source.step.set()
        assert [await anext(second), await anext(second)] == [Started(prompt_tokens=3), TextDelta(text="a")]
        await second.aclose()
        assert source.closed and len(runs) == 0  # stopped before aclose returns
        # The key is free again: an identical request now starts afresh.
        third = runs.attach("k", source)
        assert not third.joined and third.message_id != first.message_id
        await third.aclose()
        return source

    assert asyncio.run(run()).started == 1  # the third left before its run began: nothing ran


def test_a_run_takes_a_bounded_number_of_listeners():
    async def run():
        runs, source = SharedRuns(max_listeners=2), Source(["a"])
        listeners = [runs.attach("k", source), runs.attach("k", source)]
        with pytest.raises(OverloadedError):
            runs.attach("k", source)
        other = runs.attach("other", source)  # another request is not affected
        for listener in [*listeners, other]:
            await listener.aclose()

    asyncio.run(run())


def test_an_error_before_the_first_event_reaches_every_listener():
    async def refused():
        raise OverloadedError("full")
        yield  # an async generator, as _measured is

    async def run():
        runs = SharedRuns()
        first, second = runs.attach("k", refused), runs.attach("k", refused)
        for listener in (first, second):
            with pytest.raises(OverloadedError):
                await anext(listener)
            with pytest.raises(StopAsyncIteration):
                await anext(listener)
        return runs

    assert len(asyncio.run(run())) == 0


def test_requests_join_only_on_the_same_body_session_and_key():
    body = b'{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
    key = run_key(body, "s1", "key")
    assert key == run_key(body, "s1", "key")
    assert key == run_key(body.replace(b'"stream":true', b'"stream":false'), "s1", "key")
    assert key != run_key(body, "s2", "key")
    assert key != run_key(body, None, "key")
    assert key != run_key(body, "s1", "other-key")
    assert key != run_key(body.replace(b"hi", b"ho"), "s1", "key")
