"""The status page at `/` and what `/v1/status` adds for it: requests running with their phase,
the last ones ended (timing and counts, never content) and tokens per 10 s."""

import asyncio
import math
import threading
import time

import msgspec
import pytest

from pensieve_core import Failed, Finished, GenerationRequest, ModelCard, PrefillProgress, Started, TextDelta
from pensieve_server.inflight import Ended, LiveRequests
from pensieve_server.metrics import TokenRing
from pensieve_server.routes.status import Status

AUTH = {"x-api-key": "test-key"}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
SECRET = "zebra-quokka-7731"
BODY = {"model": "tiny-model", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": SECRET}]}


def status(client) -> Status:
    r = client.get("/v1/status", headers=AUTH)
    assert r.status_code == 200
    return msgspec.json.decode(r.content, type=Status)


def test_a_browser_gets_the_page_without_the_key(client, engine):
    r = client.get("/", headers={"accept": BROWSER})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/status" in r.text and "sessionStorage" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert engine.model.id not in r.text  # the page holds no data: its script fetches it with the key


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_api_clients_keep_the_old_answers_at_root(client, accept):
    headers = {"accept": accept} if accept else {}
    refused = client.get("/", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    r = client.get("/", headers={**headers, **AUTH})
    assert r.status_code == 200 and r.text == "pensieve is running\n"
    assert r.headers["content-type"].startswith("text/plain")


def test_status_says_memory_and_device(client, engine):
    s = status(client)
    assert s.memory.weights_bytes == engine.weights_bytes > 0
    assert 0 <= s.memory.free_bytes <= s.memory.limit_bytes
    assert s.device.memory_total_bytes > 0 and s.device.kind in ("cpu", "metal", "cuda")


def test_status_shows_a_request_while_it_decodes_and_after_it_ended(client, engine):
    before = status(client)
    long = {**BODY, "max_tokens": 400, "stream": True}
    done = threading.Thread(target=lambda: client.post("/v1/messages", json=long, headers=AUTH))
    done.start()
    seen = []
    while done.is_alive():
        seen += [r for r in status(client).running if r.phase == "decoding" and r.output_tokens > 0]
        time.sleep(0.02)
    done.join()
    assert seen, "the request was never seen decoding"
    counts = [r.output_tokens for r in seen]
    assert counts == sorted(counts)  # tokens so far only grow
    assert seen[0].prompt_tokens and seen[0].ttft_s is not None and seen[0].model == engine.model.id
    after = status(client)
    assert after.running == []
    last = after.recent[0]
    assert (last.outcome, last.stop_reason, last.output_tokens) == ("finished", "max_tokens", 400)
    assert last.request_id == seen[0].request_id and last.duration_s >= last.ttft_s > 0
    assert sum(after.rates.output_tokens) - sum(before.rates.output_tokens) >= 400
    assert sum(after.rates.prefill_tokens) > sum(before.rates.prefill_tokens)


def test_recent_requests_carry_no_content(client):
    answer = client.post("/v1/messages", json=BODY, headers=AUTH).json()
    text = "".join(b.get("text", "") for b in answer["content"])
    raw = client.get("/v1/status", headers=AUTH).text
    assert SECRET not in raw
    assert len(text) < 8 or text not in raw
    # Timing and token counts only: any field added here must be as harmless.
    assert set(Ended.__struct_fields__) == {
        "request_id", "model", "outcome", "stop_reason", "error_type", "ago_s", "duration_s", "ttft_s",
        "prompt_tokens", "cache_read_tokens", "output_tokens", "decode_tokens_per_s",
    }  # fmt: skip


class HeldModel:
    """The real model, holding its `hold_at`th prompt chunk until the test lets it go: the
    prefill stops there, the chunks before it reported."""

    def __init__(self, model, hold_at: int) -> None:
        self._model, self._hold_at, self._chunks = model, hold_at, 0
        self.go = threading.Event()

    def __call__(self, inputs, *args, **kwargs):
        if inputs.shape[-1] > 1:
            self._chunks += 1
            if self._chunks == self._hold_at:
                self.go.wait(30)
        return self._model(inputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_status_shows_how_far_a_long_prefill_is(engine):
    from starlette.testclient import TestClient

    from pensieve_core import Settings
    from pensieve_inference import GenerationWorker, MLXEngine
    from pensieve_server import create_app

    step = 64
    held = HeldModel(engine.loaded.model, hold_at=3)
    worker = GenerationWorker(prefill_step=step)
    lane = MLXEngine(msgspec.structs.replace(engine.loaded, model=held), worker, engine.model)
    # Past the lane's 512 tokens: chunks of 64, the third held.
    body = {**BODY, "max_tokens": 2, "messages": [{"role": "user", "content": "lorem ipsum " * 400}]}
    seen = []
    try:
        with TestClient(create_app(lane, Settings(api_key="test-key")), base_url="http://localhost") as client:
            done = threading.Thread(target=lambda: client.post("/v1/messages", json=body, headers=AUTH))
            done.start()
            deadline = time.monotonic() + 30
            while not seen or seen[-1].prefill_done != 2 * step:
                assert time.monotonic() < deadline, seen
                seen += [r for r in status(client).running if r.phase == "prefill"]
                time.sleep(0.02)
            held.go.set()
            done.join()
            after = status(client)
    finally:
        held.go.set()
        worker.stop()
    mid = seen[-1]
    assert mid.prompt_tokens > 512 and mid.prefill_percent == math.floor(1000 * 2 * step / mid.prompt_tokens) / 10
    reported = [r.prefill_done for r in seen if r.prefill_done is not None]
    assert reported == sorted(reported) and set(reported) <= {step, 2 * step}
    assert after.running == [] and after.recent[0].outcome == "finished"


def test_progress_shows_only_during_prefill():
    async def run():
        live = LiveRequests(TokenRing())
        engine = _Scripted()
        events = live.watch(engine, GenerationRequest(messages=[], max_tokens=4, request_id="req_3"))
        seen = []
        for event in (Started(prompt_tokens=1000), PrefillProgress(done=437, total=1000), TextDelta(text="a")):
            engine.events.put_nowait(event)
            await anext(events)
            (running,) = live.read()[0]
            seen.append((running.phase, running.prefill_done, running.prefill_percent))
        await events.aclose()
        return seen

    assert asyncio.run(run()) == [("prefill", None, None), ("prefill", 437, 43.7), ("decoding", None, None)]


class _Scripted:
    """An engine whose events the test hands out one at a time."""

    model = ModelCard(id="scripted", source="test", context_length=64)

    def __init__(self) -> None:
        self.events: asyncio.Queue = asyncio.Queue()

    async def generate(self, request):
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, (Finished, Failed)):
                return


def test_phases_go_queued_prefill_decoding_and_end_in_recent():
    async def run():
        live = LiveRequests(TokenRing())
        engine = _Scripted()
        events = live.watch(engine, GenerationRequest(messages=[], max_tokens=4, request_id="req_1"))
        phases = []
        step = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        phases.append(live.read()[0][0].phase)
        for event in (Started(prompt_tokens=9, cache_read_tokens=4), TextDelta(text="a")):
            engine.events.put_nowait(event)
            await step
            phases.append(live.read()[0][0].phase)
            step = asyncio.ensure_future(anext(events))
        engine.events.put_nowait(Finished(stop_reason="end_turn", output_tokens=3))
        await step
        await events.aclose()
        return phases, live, live.read()

    phases, live, (running, recent) = asyncio.run(run())
    assert phases == ["queued", "prefill", "decoding"]
    assert running == [] and [(e.request_id, e.outcome, e.output_tokens) for e in recent] == [("req_1", "finished", 3)]
    _, output, prefill = live.rate.read()
    assert (sum(output), sum(prefill)) == (3, 5)  # the engine's count; the prompt less what the cache read


def test_a_generation_closed_early_ends_as_cancelled():
    async def run():
        live = LiveRequests(TokenRing())
        engine = _Scripted()
        events = live.watch(engine, GenerationRequest(messages=[], max_tokens=4, request_id="req_2"))
        engine.events.put_nowait(Started(prompt_tokens=3))
        await anext(events)
        await events.aclose()
        return live.read()

    running, recent = asyncio.run(run())
    assert running == [] and (recent[0].outcome, recent[0].output_tokens) == ("cancelled", 0)


def test_token_ring_keeps_the_last_intervals_and_fills_the_gaps():
    now = [1000.0]
    ring = TokenRing(interval_s=10, size=3, clock=lambda: now[0])
    ring.add(output=5)
    now[0] = 1012.5
    ring.add(output=2, prefill=7)
    assert ring.read() == (2.5, [0, 5, 2], [0, 0, 7])
    now[0] = 1041.0  # three intervals on: only the current one is left, and it is empty
    assert ring.read() == (1.0, [0, 0, 0], [0, 0, 0])
