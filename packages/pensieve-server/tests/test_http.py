import anthropic
import msgspec
import pytest

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny-model", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def sse_events(text):
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if not line.startswith(":"))
        data = msgspec.json.decode(lines["data"])
        assert data["type"] == lines["event"]
        events.append(data)
    return events


@pytest.mark.parametrize(
    "headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {"authorization": "Basic test-key"}]
)
def test_missing_or_wrong_key_is_401_authentication_error(client, headers):
    r = client.post("/v1/messages", json=BODY, headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"] == r.headers["request-id"]


@pytest.mark.parametrize("headers", [AUTH, {"authorization": "Bearer test-key"}])
def test_key_by_either_header(client, headers):
    assert client.post("/v1/messages", json=BODY, headers=headers).status_code == 200


def test_non_streamed_message_shape(client):
    r = client.post("/v1/messages", json=BODY, headers=AUTH)
    m = r.json()
    assert r.headers["request-id"].startswith("req_")
    assert m["type"] == "message" and m["role"] == "assistant" and m["id"].startswith("msg_")
    assert m["model"] == "tiny-model"
    assert m["stop_reason"] == "max_tokens" and m["stop_sequence"] is None
    assert m["content"][0]["type"] == "text" and m["content"][0]["text"]
    assert m["usage"]["output_tokens"] == 6 and m["usage"]["input_tokens"] > 0
    assert m["usage"]["cache_read_input_tokens"] == 0 == m["usage"]["cache_creation_input_tokens"]


def test_streamed_events_follow_the_protocol(client):
    r = client.post("/v1/messages", json={**BODY, "stream": True}, headers=AUTH)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[1] == "ping"
    assert types[2] == "content_block_start" and types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[3:-3]) == {"content_block_delta"}
    assert all(e["index"] == 0 for e in events if "index" in e)
    start, delta = events[0]["message"], events[-2]
    assert start["usage"]["input_tokens"] > 0 and start["stop_reason"] is None
    assert delta["usage"]["output_tokens"] == 6 and delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


def test_validation_error_is_400_with_json_path(client):
    r = client.post("/v1/messages", json={**BODY, "max_tokens": "many"}, headers=AUTH)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "$.max_tokens" in err["message"]


def test_prompt_too_long_is_400_streamed_or_not(client):
    huge = {**BODY, "messages": [{"role": "user", "content": "word " * 5000}]}
    for stream in (False, True):
        r = client.post("/v1/messages", json={**huge, "stream": stream}, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("prompt is too long: ")


def test_unknown_route_is_404_envelope(client):
    r = client.get("/v2/nothing", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_health_is_public_and_names_the_model(client):
    h = client.get("/health").json()
    assert h["status"] == "ok"
    assert h["model"]["context_length"] == 4096
    assert h["device"]["kind"] in ("cpu", "metal", "cuda")


def test_count_tokens_matches_the_prompt_tokens_of_generation(client):
    counted = client.post(
        "/v1/messages/count_tokens", json={k: v for k, v in BODY.items() if k != "max_tokens"}, headers=AUTH
    )
    assert counted.json() == {
        "input_tokens": client.post("/v1/messages", json=BODY, headers=AUTH).json()["usage"]["input_tokens"]
    }


def test_official_client_non_streamed_and_streamed(client):
    sdk = anthropic.Anthropic(base_url="http://localhost", api_key="test-key", http_client=client, max_retries=0)
    msg = sdk.messages.create(model="tiny-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert msg.content[0].text and msg.usage.output_tokens == 5
    with sdk.messages.stream(model="tiny-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.content[0].text


def test_thinking_signatures_round_trip_and_the_secret_is_private(tmp_path):
    from pensieve_server.signatures import SECRET_FILE, ThinkingSigner

    signer = ThinkingSigner(home=tmp_path / "home")
    assert not (tmp_path / "home").exists(), "nothing is written until a block is signed"
    signature = signer.sign("Let me think.")
    assert (tmp_path / "home" / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    again = ThinkingSigner(home=tmp_path / "home")  # a restart reads the same secret
    assert again.verify("Let me think.", signature)
    assert not again.verify("Let me think!", signature)
    assert not ThinkingSigner(home=tmp_path / "elsewhere").verify("Let me think.", signature)


def test_models_list_one_claude_id_per_tier_with_its_window_and_output_cap(engine):
    from starlette.testclient import TestClient

    from pensieve_core import ModelCard, Settings
    from pensieve_server import ServedModels, create_app

    class SmallModel:  # /v1/models reads only the card
        model = ModelCard(id="small-model", source="test", context_length=1024)

    served = ServedModels(engine, tiers={"haiku": SmallModel()})  # type: ignore[dict-item]
    app = create_app(served, Settings(api_key="test-key", max_output_tokens=512))
    with TestClient(app, base_url="http://localhost") as c:
        sdk = anthropic.Anthropic(base_url="http://localhost", api_key="test-key", http_client=c, max_retries=0)
        listed = {m.id: (m.display_name, m.max_input_tokens, m.max_tokens) for m in sdk.models.list()}
        haiku = sdk.models.retrieve("claude-haiku-5-5")
    main = engine.model.id
    assert listed == {
        main: (main, 4096, 512),
        "small-model": ("small-model", 1024, 512),
        "claude-opus-5-5": (f"{main} (opus)", 4096, 512),
        "claude-sonnet-5-5": (f"{main} (sonnet)", 4096, 512),
        "claude-haiku-5-5": ("small-model (haiku)", 1024, 512),
    }
    assert (haiku.display_name, haiku.max_input_tokens, haiku.max_tokens) == listed["claude-haiku-5-5"]
