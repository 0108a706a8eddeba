"""`pensieve start` with no flags on a machine that cannot reach the hub: the bundled model
is served and says so; it answers, and calls a tool when it must. The port is the test
environment's (PENSIEVE_PORT): 7777, the default, may be the user's own server."""

import sys
from pathlib import Path

import anthropic
import httpx2 as httpx
import jsonschema
import pytest
from server_process import ServerProcess, isolated_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory):
    # The installed `pensieve` console script, exactly as `uv run pensieve start` runs it.
    script = Path(sys.executable).parent / "pensieve"
    home = tmp_path_factory.mktemp("default-start")
    env = isolated_env(home)
    proc = ServerProcess([], env, int(env["PENSIEVE_PORT"]), home / "server.log", command=[str(script)])
    try:
        proc.wait_ready(timeout=180)
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()


def test_offline_default_start_serves_the_bundled_model(bundled_server):
    health = httpx.get(bundled_server.url + "/health", timeout=10).json()
    assert health["model"]["id"] == "smollm2-135m"
    assert health["model"]["fallback_from"] == "phi-3-mini"
    assert "serving the bundled smollm2-135m" in bundled_server.output()
    r = httpx.post(
        bundled_server.url + "/v1/messages",
        headers={"x-api-key": "pensieve-local-key"},
        json={
            "model": "anything",
            "max_tokens": 10,
            "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France? Answer briefly."}],
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["content"][0]["text"]


WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Current time in a time zone.",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
}


def test_the_bundled_model_calls_a_tool_under_tool_choice_any(bundled_server):
    """SmolLM2's template knows no tools (the generic convention); constrained decoding makes
    its answer a call whose input fits the schema."""
    with anthropic.Anthropic(base_url=bundled_server.url, api_key="pensieve-local-key", max_retries=0) as client:
        message = client.messages.create(
            model="anything",
            max_tokens=60,
            tools=[WEATHER, TIME],
            tool_choice={"type": "any"},
            extra_body={"temperature": 0},
            messages=[{"role": "user", "content": "What's the weather like in Paris right now?"}],
        )
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    schema = {t["name"]: t["input_schema"] for t in (WEATHER, TIME)}[call.name]
    jsonschema.validate(call.input, schema)
