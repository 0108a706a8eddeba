"""A generation the client abandons is still counted: its prompt's tokens (when they reach the
worker, as for any request), its outcome, and its HTTP request; the prefix cache's read
fraction stays a fraction."""

import re
import time

import httpx2 as httpx
from server_process import ServerProcess, free_port, isolated_env

KEY = {"x-api-key": "pensieve-local-key"}
PROMPT = {"model": "tiny", "temperature": 0, "messages": [{"role": "user", "content": "Go on and on " * 20}]}


def scrape(server) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", headers=KEY, timeout=10).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(pensieve_\S+) (\S+)$", text, re.M)}


def status(server) -> dict:
    return httpx.get(server.url + "/v1/status", headers=KEY, timeout=10).json()


def abandon_stream(server, max_tokens: int) -> None:
    body = {**PROMPT, "max_tokens": max_tokens, "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", server.url + "/v1/messages", headers=KEY, json=body) as r,
    ):
        for chunk in r.iter_bytes():
            if b"content_block_delta" in chunk:
                return  # leaving the block closes the connection mid-stream


def settle(server) -> None:
    deadline = time.monotonic() + 10
    while status(server)["requests"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)


def test_cancelled_streams_count_their_prompt_outcome_and_request(tiny_model_dir, tmp_path):
    port = free_port()
    server = ServerProcess(
        ["--model", str(tiny_model_dir), "--port", str(port)], isolated_env(tmp_path), port, tmp_path / "log"
    )
    server.wait_ready()
    try:
        r = httpx.post(server.url + "/v1/messages", headers=KEY, json={**PROMPT, "max_tokens": 2}, timeout=60)
        assert r.status_code == 200
        # Two streams of the same prompt, each read back from the prefix cache, then abandoned.
        for max_tokens in (3000, 3001):
            abandon_stream(server, max_tokens)
            settle(server)
        s = status(server)
        ended = s["recent"]
        assert [e["outcome"] for e in ended] == ["cancelled", "cancelled", "finished"]
        assert all(e["cache_read_tokens"] > 0 for e in ended[:2])
        # Every prompt counts, the abandoned ones too; what the cache read is part of it.
        assert s["tokens"]["input"] == sum(e["prompt_tokens"] for e in ended)
        assert s["tokens"]["cache_read"] == sum(e["cache_read_tokens"] for e in ended)
        assert 0 < s["prefix_cache"]["read_fraction"] <= 1
        metrics = scrape(server)
        assert metrics['pensieve_generations_ended_total{outcome="cancelled"}'] == 2
        assert metrics['pensieve_generations_ended_total{outcome="finished"}'] == 1
        assert metrics['pensieve_requests_total{path="/v1/messages",status="200"}'] == 3
        assert metrics["pensieve_input_tokens_total"] == s["tokens"]["input"]
    finally:
        assert server.stop() == 0, server.output()
