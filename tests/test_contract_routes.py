"""Routes, probes, request ids, models and count_tokens against the live server process."""

import anthropic
import httpx2 as httpx
import pytest

KEY = {"x-api-key": "pensieve-local-key"}
BODY = {"model": "tiny", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def test_messages_with_a_query_string(server):
    r = httpx.post(server.url + "/v1/messages?beta=true", headers=KEY, json=BODY, timeout=60)
    assert r.status_code == 200 and r.json()["type"] == "message"


@pytest.mark.parametrize("path", ["/", "/api/hello", "/v1/messages"])
def test_head_probes_answer_without_error(server, path):
    r = httpx.head(server.url + path, timeout=10)
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    "method, path, headers, status",
    [
        ("GET", "/health", {}, 200),
        ("GET", "/v1/models", KEY, 200),
        ("GET", "/v1/models", {}, 401),
        ("GET", "/v1/nothing", KEY, 404),
        ("POST", "/v1/messages", KEY, 400),
        ("GET", "/v1/messages", KEY, 405),
    ],
)
def test_every_response_carries_a_request_id(server, method, path, headers, status):
    r = httpx.request(
        method, server.url + path, headers=headers, timeout=10, content=b"{}" if method == "POST" else None
    )
    assert r.status_code == status
    assert r.headers["request-id"].startswith("req_")
    if status >= 400:
        assert r.json()["type"] == "error" and r.json()["request_id"] == r.headers["request-id"]


TIER_IDS = ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]


def test_models_list_and_get(server):
    listing = httpx.get(server.url + "/v1/models", headers=KEY, timeout=10).json()
    assert listing["has_more"] is False
    model, *tiers = listing["data"]
    assert listing["first_id"] == model["id"] and listing["last_id"] == tiers[-1]["id"]
    assert model["type"] == "model" and model["max_input_tokens"] == 4096
    assert model["created_at"].endswith("Z")
    one = httpx.get(server.url + f"/v1/models/{model['id']}", headers=KEY, timeout=10).json()
    assert one == model
    tier = httpx.get(server.url + "/v1/models/claude-opus-5-5", headers=KEY, timeout=10).json()
    assert tier == tiers[0] and tier["max_input_tokens"] == 4096


def test_models_list_the_tier_ids_claude_code_keeps(server):
    """Claude Code's /model picker (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1) keeps only
    ids that start with "claude": one per tier, with the served model's window and output cap."""
    sdk = anthropic.Anthropic(base_url=server.url, api_key="pensieve-local-key", max_retries=0)
    listed = {m.id: m for m in sdk.models.list(limit=1000)}
    assert [i for i in listed if i.startswith("claude")] == TIER_IDS
    for model_id in TIER_IDS:
        m = listed[model_id]
        assert m.type == "model" and m.lifecycle == "active" and "tiny" in m.display_name
        assert (m.max_input_tokens, m.max_tokens) == (4096, 4096)
        assert sdk.models.retrieve(model_id) == m
    page = sdk.models.list(limit=2)
    assert page.has_more is True and [m.id for m in page.data] == list(listed)[:2]
    assert [m.id for m in page.get_next_page().data] == list(listed)[2:]


def test_unserved_path_like_model_is_404_listing_served(server):
    for name in ("someone/else", "../../etc", "/tmp", "model.gguf"):
        r = httpx.get(server.url + f"/v1/models/{name}", headers=KEY, timeout=10)
        assert r.status_code == 404, name
        r = httpx.post(server.url + "/v1/messages", headers=KEY, json={**BODY, "model": name}, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        assert "served models:" in r.json()["error"]["message"]


def test_official_client_models_and_count_tokens(server):
    sdk = anthropic.Anthropic(base_url=server.url, api_key="pensieve-local-key", max_retries=0)
    ids = [m.id for m in sdk.models.list()]
    assert ids == [ids[0], *TIER_IDS]
    counted = sdk.messages.count_tokens(model="tiny", messages=[{"role": "user", "content": "Hi"}])
    created = sdk.messages.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    u = created.usage
    assert counted.input_tokens == u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens > 0


def test_count_tokens_is_exact_with_system_tools_and_messages(server):
    body = {
        "model": "tiny",
        "system": [{"type": "text", "text": "Be terse."}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "messages": [
            {"role": "user", "content": "weather in Oslo?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]},
        ],
    }
    counted = httpx.post(server.url + "/v1/messages/count_tokens", headers=KEY, json=body, timeout=30)
    assert list(counted.json()) == ["input_tokens"]
    made = httpx.post(server.url + "/v1/messages", headers=KEY, json={**body, "max_tokens": 1}, timeout=60).json()
    u = made["usage"]
    # Total input = input_tokens + cache_creation_input_tokens + cache_read_input_tokens.
    assert (
        counted.json()["input_tokens"]
        == u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
    )
    bare = httpx.post(
        server.url + "/v1/messages/count_tokens",
        headers=KEY,
        json={"model": "tiny", "messages": body["messages"]},
        timeout=30,
    )
    assert bare.json()["input_tokens"] < counted.json()["input_tokens"]  # system and tools count
