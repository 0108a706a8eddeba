"""Streaming invariants, stop conditions, usage and tool_use blocks against live processes."""

import json

import anthropic
import httpx2 as httpx
import pytest
from server_process import sse_events

KEY = {"x-api-key": "pensieve-local-key"}
USAGE_FIELDS = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}


def stream(server, body):
    body = {"model": "tiny", "max_tokens": 5, "temperature": 0, "stream": True, **body}
    r = httpx.post(server.url + "/v1/messages", headers=KEY, json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return sse_events(r.text)


def total_input(usage):
    return usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]


def check_invariants(events):
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types.count("message_start") == 1
    assert types[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index = e["index"]
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            open_index, next_index = None, next_index + 1
        else:
            assert e["type"] == "ping"
    assert open_index is None
    assert set(events[0]["message"]["usage"]) == USAGE_FIELDS
    assert set(events[-2]["usage"]) == USAGE_FIELDS


def test_event_order_indices_ping_and_usage(server):
    events = stream(server, {"messages": [{"role": "user", "content": "Hello"}]})
    check_invariants(events)
    assert events[1]["type"] == "ping"
    start, delta = events[0]["message"], events[-2]
    assert start["content"] == [] and start["stop_reason"] is None
    assert total_input(start["usage"]) > 0
    for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert delta["usage"][field] == start["usage"][field]
    assert delta["usage"]["output_tokens"] == 5 and delta["delta"]["stop_reason"] == "max_tokens"


def filler(server, tokens):
    """A user message that renders to about `tokens` prompt tokens (measured, not guessed)."""

    def count(n):
        r = httpx.post(
            server.url + "/v1/messages/count_tokens",
            headers=KEY,
            timeout=30,
            json={"model": "tiny", "messages": [{"role": "user", "content": "lorem ipsum " * n}]},
        )
        return r.json()["input_tokens"]

    base, per = count(100), (count(200) - count(100)) / 100
    return "lorem ipsum " * int(100 + (tokens - base) / per)


def test_keepalive_pings_during_a_long_prefill(server):
    # ~3,500 prompt tokens take seconds to prefill on the CPU; the server pings every 0.3 s.
    events = stream(server, {"max_tokens": 1, "messages": [{"role": "user", "content": filler(server, 3500)}]})
    check_invariants(events)
    first_block = next(i for i, e in enumerate(events) if e["type"] == "content_block_start")
    assert sum(e["type"] == "ping" for e in events[:first_block]) >= 3


def test_stop_sequence_streamed_and_not(server):
    free = stream(server, {"max_tokens": 12, "messages": [{"role": "user", "content": "Hello"}]})
    text = "".join(e["delta"]["text"] for e in free if e["type"] == "content_block_delta")
    stop = text[4:8]
    events = stream(
        server, {"max_tokens": 12, "stop_sequences": [stop], "messages": [{"role": "user", "content": "Hello"}]}
    )
    check_invariants(events)
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": stop}
    streamed = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert streamed == text[: text.index(stop)]
    plain = httpx.post(
        server.url + "/v1/messages",
        headers=KEY,
        timeout=60,
        json={
            "model": "tiny",
            "max_tokens": 12,
            "temperature": 0,
            "stop_sequences": ["zzzz", stop],
            "messages": [{"role": "user", "content": "Hello"}],
        },
    ).json()
    assert (plain["stop_reason"], plain["stop_sequence"]) == ("stop_sequence", stop)


def test_max_tokens_is_clamped_to_what_the_context_leaves(server):
    prompt = filler(server, 4050)  # leaves a few dozen tokens of the 4,096
    r = httpx.post(
        server.url + "/v1/messages",
        headers=KEY,
        timeout=120,
        json={
            "model": "tiny",
            "max_tokens": 128000,
            "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        },
    )
    m = r.json()
    assert r.status_code == 200, r.text
    assert m["stop_reason"] == "model_context_window_exceeded"
    assert total_input(m["usage"]) + m["usage"]["output_tokens"] == 4096


@pytest.mark.parametrize("streamed", [False, True])
def test_prompt_too_long_is_400_with_the_wording_clients_know(server, streamed):
    r = httpx.post(
        server.url + "/v1/messages",
        headers=KEY,
        timeout=60,
        json={
            "model": "tiny",
            "max_tokens": 10,
            "stream": streamed,
            "messages": [{"role": "user", "content": "lorem ipsum " * 3000}],
        },
    )
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 4096 maximum")


WEATHER = {
    "name": "get_weather",
    "description": "Forecast",
    "input_schema": {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]},
}


def test_tool_use_streamed_with_valid_partial_json(tool_server):
    events = stream(
        tool_server, {"max_tokens": 60, "tools": [WEATHER], "messages": [{"role": "user", "content": "Weather?"}]}
    )
    check_invariants(events)
    start = next(e for e in events if e["type"] == "content_block_start")
    block = start["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and block["input"] == {}
    assert block["id"].startswith("toolu_")
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert json.loads("".join(pieces)) == {"days": 3}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_tool_use_through_the_official_client_and_back(tool_server):
    sdk = anthropic.Anthropic(base_url=tool_server.url, api_key="pensieve-local-key", max_retries=0)
    msg = sdk.messages.create(
        model="m", max_tokens=60, tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]
    )
    assert msg.stop_reason == "tool_use"
    (call,) = msg.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"days": 3})
    with sdk.messages.stream(
        model="m",
        max_tokens=60,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [c.model_dump() for c in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    ) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"days": 3}


def test_tool_choice_none_offers_no_tools(tool_server):
    r = httpx.post(
        tool_server.url + "/v1/messages",
        headers=KEY,
        timeout=60,
        json={
            "model": "m",
            "max_tokens": 60,
            "tools": [WEATHER],
            "tool_choice": {"type": "none"},
            "messages": [{"role": "user", "content": "Weather?"}],
        },
    )
    m = r.json()
    assert m["stop_reason"] == "end_turn" and m["content"][0]["type"] == "text"
    assert "<tool_call>" in m["content"][0]["text"]  # the scripted model still says it: as text
