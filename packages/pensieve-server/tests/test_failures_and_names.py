import msgspec
import pytest
from starlette.testclient import TestClient

from pensieve_core import Settings
from pensieve_core.errors import ModelNotFoundError
from pensieve_server import ServedModels, create_app

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def events_of(text):
    out = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        out.append((lines["event"], msgspec.json.decode(lines["data"])))
    return out


def test_failure_after_the_200_is_one_error_event_then_nothing(client, failing_midway):
    r = client.post("/v1/messages", json={**BODY, "stream": True}, headers=AUTH)
    assert r.status_code == 200
    events = events_of(r.text)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error"
    assert names.count("error") == 1 and "message_stop" not in names
    assert events[-1][1]["error"] == {"type": "api_error", "message": "generation failed: device lost"}


def test_failure_before_a_non_streamed_answer_is_a_500_envelope(client, failing_midway):
    r = client.post("/v1/messages", json=BODY, headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "api_error" and r.headers["request-id"].startswith("req_")


def test_strict_names_refuse_unknown_models(engine):
    with TestClient(
        create_app(engine, Settings(api_key="test-key", strict_model_names=True)), base_url="http://localhost"
    ) as c:
        r = c.post("/v1/messages", json={**BODY, "model": "gpt-5"}, headers=AUTH)
        assert r.status_code == 404 and engine.model.id in r.json()["error"]["message"]
        assert c.post("/v1/messages", json={**BODY, "model": engine.model.id}, headers=AUTH).status_code == 200
        assert c.post("/v1/messages", json={**BODY, "model": "claude-haiku-4-5"}, headers=AUTH).status_code == 200


@pytest.fixture(scope="module")
def small_engine(engine, tmp_path_factory):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("small"), num_layers=1)
    return MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub(), worker=engine.worker)


def test_tier_names_select_tier_models(engine, small_engine):
    main, small = engine, small_engine
    served = ServedModels(
        main, names={"phi-3-mini": main, "smol": small}, tiers={"opus": main, "sonnet": main, "haiku": small}
    )
    assert served.select("claude-haiku-4-5-20251001") is small
    assert served.select("claude-opus-5-5") is main
    assert served.select("claude-unknown") is main
    assert served.select("smol") is small and served.select("phi-3-mini") is main
    assert served.select("llama3") is main
    for name in ("org/model", "./x", "~/m", "m.gguf", "C:\\models"):
        with pytest.raises(ModelNotFoundError, match=f"served models: {main.model.id}, {small.model.id}"):
            served.select(name)


def test_a_model_that_keeps_failing_is_degraded_in_health_until_it_serves_again(client, engine, monkeypatch):
    def always_fails(self, *args, **kwargs):
        raise RuntimeError("device lost for good")

    assert client.get("/health").json()["status"] == "ok"
    with monkeypatch.context() as patch:
        patch.setattr(type(engine.loaded.model), "__call__", always_fails)
        for _ in range(3):
            assert client.post("/v1/messages", json=BODY, headers=AUTH).status_code == 500
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "device lost for good" in health["problem"]
    assert client.post("/v1/messages", json=BODY, headers=AUTH).status_code == 200
    assert client.get("/health").json()["status"] == "ok"
