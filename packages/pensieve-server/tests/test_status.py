import os

import msgspec
import pytest
from prometheus_client import REGISTRY

from pensieve_server.metrics import Metrics
from pensieve_server.routes.status import Status

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny-model", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def status(client) -> Status:
    r = client.get("/v1/status", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return msgspec.json.decode(r.content, type=Status)


def metric(client, name: str) -> float:
    text = client.get("/metrics", headers=AUTH).text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


@pytest.mark.parametrize("route", ["/v1/status", "/metrics"])
@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_status_and_metrics_refuse_a_missing_or_wrong_key(client, route, headers):
    r = client.get(route, headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"] == r.headers["request-id"]


def test_status_names_the_served_model_and_this_process(client, engine):
    s = status(client)
    assert s.status == "ok" and s.problem is None and s.pid == os.getpid() and s.uptime_s >= 0
    assert [(m.id, m.context_length) for m in s.models] == [(engine.model.id, 4096)]


def test_status_counts_move_after_a_request(client):
    before = status(client)
    usage = client.post("/v1/messages", json=BODY, headers=AUTH).json()["usage"]
    after = status(client)
    # Two requests between the readings: the message and the first status read itself.
    assert after.requests.total == before.requests.total + 2
    assert after.requests.generations == before.requests.generations + 1
    assert after.requests.in_flight == 0
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert after.tokens.input - before.tokens.input == prompt
    assert after.tokens.output - before.tokens.output == usage["output_tokens"] == 6
    assert after.tokens.cache_read - before.tokens.cache_read == usage["cache_read_input_tokens"]
    assert after.speed.decode_tokens_per_s is not None and after.speed.decode_tokens_per_s > 0
    assert after.speed.ttft_s is not None and after.speed.ttft_s > 0


def test_metrics_serves_the_same_counts_as_prometheus_text(client):
    client.post("/v1/messages", json=BODY, headers=AUTH)
    r = client.get("/metrics", headers=AUTH)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("pensieve_requests_total", "pensieve_ttft_seconds", "pensieve_active_generations"):
        assert f"# TYPE {name} " in r.text
    s = status(client)
    assert metric(client, "pensieve_output_tokens_total") == s.tokens.output
    assert metric(client, "pensieve_generations_total") == s.requests.generations
    assert metric(client, "pensieve_decode_tokens_per_second_count") >= 1


def test_metrics_answers_openmetrics_to_a_scraper_that_asks(client):
    r = client.get("/metrics", headers={**AUTH, "accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n") and "pensieve_output_tokens_total " in r.text


def test_each_app_counts_in_its_own_registry():
    """Tests build many apps in one process: none may count into prometheus_client's global one."""
    one, two = Metrics(), Metrics()
    one.request_done("/v1/messages", 200)
    assert one.requests_total == 1 and two.requests_total == 0
    assert b'pensieve_requests_total{path="/v1/messages",status="200"} 1.0' in one.render()[0]
    assert REGISTRY.get_sample_value("pensieve_requests_total", {"path": "/v1/messages", "status": "200"}) is None
