"""Property-based fuzzing of malformed bodies: /v1/messages and count_tokens never answer 5xx."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pensieve_core import Settings
from pensieve_server import create_app

AUTH = {"x-api-key": "test-key", "content-type": "application/json"}

# CI replays one fixed set of examples, so a run is reproducible; local runs explore anew.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system", "tool", "", 3])
block_types = st.sampled_from(
    [
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "tool_reference",
        "server_tool_use",
        "bogus",
    ]
)
blocks = st.fixed_dictionaries(
    {"type": block_types},
    optional={
        "text": json_values,
        "source": json_values,
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": json_values,
        "thinking": json_values,
    },
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles}, optional={"content": st.text(max_size=30) | st.lists(blocks, max_size=3) | json_values}
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(max_size=20) | json_values,
        "max_tokens": st.integers(-5, 5) | json_values,
        "messages": messages | json_values,
        "system": st.text(max_size=20) | st.lists(blocks, max_size=2) | json_values,
        "stream": st.booleans() | json_values,
        "temperature": st.floats(-3, 3, allow_nan=False) | json_values,
        "top_p": json_values,
        "top_k": json_values,
        "stop_sequences": st.lists(st.text(max_size=5), max_size=3) | json_values,
        "tools": st.lists(
            st.fixed_dictionaries({}, optional={"name": json_values, "input_schema": json_values, "type": json_values}),
            max_size=2,
        )
        | json_values,
        "tool_choice": json_values
        | st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "x"])}),
        "thinking": json_values,
    },
)
raw = st.binary(max_size=200) | bodies.map(lambda b: json.dumps(b).encode())


@pytest.fixture(scope="module")
def fuzz_client(engine):
    engine.max_output_tokens = 1  # valid bodies generate one token: the fuzzing is about parsing
    try:
        with TestClient(create_app(engine, Settings(api_key="test-key")), base_url="http://localhost") as c:
            yield c
    finally:
        engine.max_output_tokens = None


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=raw, path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
def test_malformed_bodies_never_get_a_5xx(fuzz_client, body, path):
    r = fuzz_client.post(path, content=body, headers=AUTH)
    assert r.status_code < 500, (r.status_code, r.text, body)
    if r.status_code >= 400:
        assert r.json()["type"] == "error"
