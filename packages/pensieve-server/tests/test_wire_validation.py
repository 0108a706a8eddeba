"""A body whose fields break the wire rules is refused first, with msgspec's path: before its
model is looked up, before thinking signatures are checked, and before any engine work."""

import pytest

AUTH = {"x-api-key": "test-key"}
# Each would be refused on its own, later: the model is not served (404), the signature is not ours (400).
UNSERVED = "ollama:no-such-model"
FORGED = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "forged"}]},
    {"role": "user", "content": "Go on"},
]


def body(model=UNSERVED, messages=FORGED, **fields):
    return {"model": model, "max_tokens": 6, "messages": messages, **fields}


def test_each_later_check_would_refuse_this_body_on_its_own(client):
    unserved = client.post("/v1/messages", json=body(), headers=AUTH)
    assert unserved.status_code == 404 and unserved.json()["error"]["type"] == "not_found_error"
    forged = client.post("/v1/messages", json=body(model="tiny"), headers=AUTH)
    assert forged.status_code == 400 and "Invalid `signature`" in forged.json()["error"]["message"]


@pytest.mark.parametrize(
    "fields, path",
    [
        ({"temperature": 3}, "$.temperature"),
        ({"top_p": 2}, "$.top_p"),
        ({"max_tokens": 0}, "$.max_tokens"),
        ({"temperature": 3, "stream": True}, "$.temperature"),
        ({"thinking": {"type": "enabled", "budget_tokens": 6}}, "$.thinking.budget_tokens"),
    ],
)
def test_a_field_past_its_rule_is_a_400_with_its_path_before_routing(client, fields, path):
    metrics = client.app.state.metrics
    generations = metrics.generations
    r = client.post("/v1/messages", json=body(**fields), headers=AUTH)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    payload = r.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert f"at `{path}`" in payload["error"]["message"]
    assert payload["request_id"] == r.headers["request-id"]
    assert metrics.generations == generations, "no engine work for a refused body"


def test_count_tokens_refuses_a_field_past_its_rule_before_routing(client):
    r = client.post(
        "/v1/messages/count_tokens",
        json={"model": UNSERVED, "messages": FORGED, "thinking": {"type": "enabled", "budget_tokens": 0}},
        headers=AUTH,
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "at `$.thinking.budget_tokens`" in r.json()["error"]["message"]
