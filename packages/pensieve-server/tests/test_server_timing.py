"""Every response says where its time went: a W3C Server-Timing header with the engine's phases
(and, where the answer is complete before the headers go, prefill, ttft and total), and one
debug log line per request."""

import time

from structlog.testing import capture_logs

AUTH = {"x-api-key": "test-key"}
TOOL = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object", "properties": {}}}
BODY = {
    "model": "tiny-model",
    "max_tokens": 4,
    "temperature": 0,
    "messages": [{"role": "user", "content": "Hi there"}],
    "tools": [TOOL],
}
ENGINE_PHASES = ["render", "tokenize", "grammar", "queue", "cache"]


def durations(header: str) -> dict[str, float]:
    """name;dur=ms entries, comma-separated (the W3C Server-Timing syntax)."""
    out = {}
    for entry in header.split(","):
        name, *params = entry.strip().split(";")
        (dur,) = [p for p in params if p.startswith("dur=")]
        out[name] = float(dur.removeprefix("dur="))
    return out


def test_non_streamed_response_times_every_phase(client):
    r = client.post("/v1/messages", json=BODY, headers=AUTH)
    assert r.status_code == 200
    timed = durations(r.headers["server-timing"])
    assert list(timed) == [*ENGINE_PHASES, "prefill", "ttft", "total"]
    assert all(ms >= 0 for ms in timed.values())
    # Templating, encoding and the tool constraint are real work on every request.
    assert timed["render"] > 0 and timed["tokenize"] > 0 and timed["grammar"] > 0
    assert timed["prefill"] <= timed["ttft"] <= timed["total"]


def test_streamed_response_times_the_phases_before_prefill(client):
    with client.stream("POST", "/v1/messages", json={**BODY, "stream": True}, headers=AUTH) as r:
        timed = durations(r.headers["server-timing"])
        r.read()
    assert list(timed)[: len(ENGINE_PHASES)] == ENGINE_PHASES
    assert all(ms >= 0 for ms in timed.values())
    assert timed["render"] > 0 and timed["tokenize"] > 0


def test_each_request_logs_its_phases_at_debug(client):
    with capture_logs() as logs:
        client.post("/v1/messages", json=BODY, headers=AUTH)
        deadline = time.monotonic() + 5  # logged as the run ends, which may trail the response
        while not any(e["event"] == "request_phases" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.01)
    (line,) = [e for e in logs if e["event"] == "request_phases"]
    assert line["log_level"] == "debug" and line["prompt_tokens"] > 0
    names = [*ENGINE_PHASES, "prefill", "ttft", "total"]
    assert all(line[f"{name}_ms"] >= 0 for name in names)
