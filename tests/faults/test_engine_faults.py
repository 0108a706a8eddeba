"""The poison sequence on the live server: a request with a sampling value the model cannot use
arrives while another stream decodes; the innocent stream finishes with message_stop, the odd
value is served (clamped) or refused with its JSON path, and the server goes on serving."""

from __future__ import annotations

import json
import threading

import httpx2 as httpx
import pytest
from server_process import sse_events

KEY = {"x-api-key": "pensieve-local-key", "anthropic-version": "2023-06-01"}


def body(text, **extra):
    return {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": text}], **extra}


def post(server, payload, timeout=60):
    return httpx.post(server.url + "/v1/messages", json=payload, headers=KEY, timeout=timeout)


class Innocent(threading.Thread):
    """A stream decoding 200 tokens; `decoding` is set once its first text arrived."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.decoding, self.raw = server, threading.Event(), ""

    def run(self):
        payload = body("An innocent stream that decodes for a while", max_tokens=200, temperature=0, stream=True)
        with httpx.stream("POST", self.server.url + "/v1/messages", json=payload, headers=KEY, timeout=120) as r:
            for chunk in r.iter_text():
                self.raw += chunk
                if "content_block_delta" in self.raw:
                    self.decoding.set()
        self.decoding.set()


@pytest.mark.parametrize("top_k", [49152, 10**6, 2**63 - 1])
def test_a_top_k_past_the_vocabulary_poisons_nothing(server, top_k):
    innocent = Innocent(server)
    innocent.start()
    assert innocent.decoding.wait(60)
    odd = post(server, body("Sampled with a huge top_k", temperature=1, top_k=top_k))
    assert odd.status_code == 200, odd.text  # clamped: every token stays a candidate
    innocent.join(120)
    events = sse_events(innocent.raw)
    assert events[-1]["type"] == "message_stop"
    assert next(e for e in events if e["type"] == "message_delta")["usage"]["output_tokens"] == 200
    for i in range(5):
        after = post(server, body(f"Served after the odd request {i}", temperature=0))
        assert after.status_code == 200 and after.json()["stop_reason"] == "max_tokens"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize("raw_top_k", ["1e30", "-1", "2.5", '"5"'])
def test_a_top_k_that_is_no_count_is_a_400_naming_it(server, raw_top_k):
    text = json.dumps(body("top_k that is not a count")).replace('"max_tokens"', f'"top_k": {raw_top_k}, "max_tokens"')
    r = httpx.post(server.url + "/v1/messages", content=text, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "top_k" in error["message"]
    assert post(server, body("still served", temperature=0)).status_code == 200
