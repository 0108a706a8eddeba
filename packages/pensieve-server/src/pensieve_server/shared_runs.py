"""Identical requests in flight share one generation. Claude Code resends a request when no byte
has come for about 300 s; starting a second prefill of the same prompt would only slow the first
until both time out again (a livelock), so the resend joins the run already going."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import AsyncGenerator, Callable

import msgspec

from pensieve_core import GenerationEvent
from pensieve_core.errors import OverloadedError

from .ids import message_id

# Resends only come every few minutes: past this many clients on one run, something is wrong.
MAX_LISTENERS = 8


class _End:
    """The run is over: what a listener's queue holds last."""


class _Wake:
    """No event: the reader is woken to look at something else (a ping due, the shutdown)."""


_END = _End()
_WAKE = _Wake()
# What a run hands its listeners: its events, then the exception that ended it, or _END.
_Item = GenerationEvent | BaseException | _End | _Wake
# A generation as the engine's async generator: closing it stops the work.
Events = AsyncGenerator[GenerationEvent, None]


def run_key(raw_body: bytes, session_id: str | None, api_key: str | None) -> str:
    """One digest of the body without its `stream` flag (a streamed and a non-streamed copy make
    the same generation), the session id and the key: requests join only within both."""
    fields = msgspec.json.decode(raw_body)
    if isinstance(fields, dict):
        fields.pop("stream", None)
    return hashlib.sha256(msgspec.json.encode([fields, session_id, api_key])).hexdigest()


class Listener:
    """One client's view of a run: every event from the start, then the live ones. Closing it
    leaves the run; the last to leave stops the generation."""

    def __init__(self, run: _Run, queue: asyncio.Queue[_Item], joined: bool) -> None:
        self._run = run
        self._queue = queue
        self._done = False
        self._held: _End | BaseException | None = None  # the end, met while taking a batch
        self._ready: collections.deque[GenerationEvent] = collections.deque()  # taken, not given out
        self.joined = joined
        self.message_id = run.message_id

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> GenerationEvent:
        while not self._ready:
            self._ready.extend(await self.batch())
        return self._ready.popleft()

    def wake(self) -> None:
        """Make a waiting `batch()` return, with nothing if no event came."""
        self._queue.put_nowait(_WAKE)

    async def batch(self) -> list[GenerationEvent]:
        """The events that are ready, waiting for the first unless woken (then maybe none):
        one read per burst instead of one per event. Ends as an iterator does, after the
        events before the end."""
        if self._ready:
            taken = list(self._ready)
            self._ready.clear()
            return taken
        if self._done:
            raise StopAsyncIteration
        item: _Item = self._held if self._held is not None else await self._queue.get()
        self._held = None
        events: list[GenerationEvent] = []
        while True:
            if isinstance(item, (_End, BaseException)):
                if events:
                    self._held = item
                    return events
                self._done = True
                if isinstance(item, _End):
                    raise StopAsyncIteration
                raise item
            if not isinstance(item, _Wake):
                events.append(item)
            if self._queue.empty():
                return events
            item = self._queue.get_nowait()

    async def aclose(self) -> None:
        if self._queue in self._run.listeners:
            self._done = True
            await self._run.leave(self._queue)


class _Run:
    """One generation read by one task, which hands each event to every listener and keeps them
    all, so that a late joiner sees the same message from its message_start on."""

    def __init__(self, events: Events, forget: Callable[[_Run], None]) -> None:
        self.message_id = message_id()
        self.history: list[_Item] = []
        self.listeners: set[asyncio.Queue[_Item]] = set()
        self._forget = forget
        self._task = asyncio.ensure_future(self._pump(events))

    def listen(self, joined: bool) -> Listener:
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        for item in self.history:
            queue.put_nowait(item)
        self.listeners.add(queue)
        return Listener(self, queue, joined)

    def _send(self, item: _Item) -> None:
        self.history.append(item)
        for queue in self.listeners:
            queue.put_nowait(item)

    async def _pump(self, events: Events) -> None:
        try:
            async for event in events:
                self._send(event)
        except Exception as exc:  # noqa: BLE001 — each listener raises it, as a lone request would
            self._send(exc)
        finally:
            self._forget(self)
            self._send(_END)
            await events.aclose()

    async def leave(self, queue: asyncio.Queue[_Item]) -> None:
        self.listeners.discard(queue)
        if not self.listeners and not self._task.done():
            # Forgotten at once: a resend arriving now starts afresh instead of joining a dying run.
            self._forget(self)
            self._task.cancel()
            await asyncio.wait({self._task})


class SharedRuns:
    """The generations running now, by `run_key`."""

    def __init__(self, max_listeners: int = MAX_LISTENERS) -> None:
        self.max_listeners = max_listeners
        self._runs: dict[str, _Run] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def attach(self, key: str, start: Callable[[], Events]) -> Listener:
        """Join the run under `key`, or start one with `start()`; no await, so two identical
        requests cannot both start one."""
        run = self._runs.get(key)
        if run is None:
            run = _Run(start(), lambda done: self._drop(key, done))
            self._runs[key] = run
            return run.listen(joined=False)
        if len(run.listeners) >= self.max_listeners:
            raise OverloadedError(f"{len(run.listeners)} identical requests are already waiting on this generation")
        return run.listen(joined=True)

    def _drop(self, key: str, run: _Run) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
