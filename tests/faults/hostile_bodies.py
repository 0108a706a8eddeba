"""Request bodies that once cost a 500, a poisoned engine or seconds of CPU, with the answer
each must now get: (name, route, body, status, error type, the JSON path the message names)."""

from __future__ import annotations

import json

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
BASE = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


DEEP = "@deep@"  # stands for a nested object in a body, spliced in as bytes (json.dumps recurses)


def nested(levels: int) -> str:
    return DEEP + str(levels)


def _body(**fields: object) -> bytes:
    return _splice(json.dumps({**BASE, **fields}))


def _splice(text: str) -> bytes:
    """Each `"@deep@N"` becomes an object N levels deep: {"a":{"a":...{}}}."""
    parts = text.split(f'"{DEEP}')
    out = [parts[0]]
    for part in parts[1:]:
        digits, rest = part.split('"', 1)
        n = int(digits)
        out.append('{"a":' * (n - 1) + "{}" + "}" * (n - 1) + rest)
    return "".join(out).encode()


def _orphan_result() -> bytes:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "rain"}]},
    ]
    return _body(messages=messages, tools=[TOOL])


def _big_count_tokens() -> bytes:
    return json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "w " * (4_200_000)}]}).encode()


HOSTILE = [
    ("top_k float 1e30", MESSAGES, _body(top_k=1e30), 400, "invalid_request_error", "$.top_k"),
    ("top_k negative", MESSAGES, _body(top_k=-1), 400, "invalid_request_error", "$.top_k"),
    ("temperature 1.5", MESSAGES, _body(temperature=1.5), 400, "invalid_request_error", "$.temperature"),
    ("top_p 2", MESSAGES, _body(top_p=2), 400, "invalid_request_error", "$.top_p"),
    ("max_tokens 10^48", MESSAGES, _body(max_tokens=10**48), 400, "invalid_request_error", "$.max_tokens"),
    ("max_tokens 0", MESSAGES, _body(max_tokens=0), 400, "invalid_request_error", "$.max_tokens"),
    (
        "100,000 stop_sequences",
        MESSAGES,
        _body(stop_sequences=["ab"] * 100_000),
        400,
        "invalid_request_error",
        "$.stop_sequences",
    ),
    (
        "a 2,000-char stop sequence",
        MESSAGES,
        _body(stop_sequences=["x" * 2000]),
        400,
        "invalid_request_error",
        "$.stop_sequences[0]",
    ),
    (
        "an empty stop sequence",
        MESSAGES,
        _body(stop_sequences=["ok", ""]),
        400,
        "invalid_request_error",
        "$.stop_sequences[1]",
    ),
    (
        "1,000 tools",
        MESSAGES,
        _body(tools=[{**TOOL, "name": f"t{i}"} for i in range(1000)]),
        400,
        "invalid_request_error",
        "$.tools",
    ),
    (
        "a 100 KB tool schema",
        MESSAGES,
        _body(tools=[{**TOOL, "input_schema": {"type": "object", "description": "d" * 100_000}}]),
        400,
        "invalid_request_error",
        "$.tools[0].input_schema",
    ),
    (
        "tool_choice any without tools",
        MESSAGES,
        _body(tool_choice={"type": "any"}),
        400,
        "invalid_request_error",
        "$.tool_choice",
    ),
    (
        "tool_choice tool without tools",
        MESSAGES,
        _body(tool_choice={"type": "tool", "name": "x"}),
        400,
        "invalid_request_error",
        "$.tool_choice",
    ),
    ("duplicate tool names", MESSAGES, _body(tools=[TOOL, TOOL]), 400, "invalid_request_error", "$.tools[1].name"),
    ("empty tool name", MESSAGES, _body(tools=[{**TOOL, "name": ""}]), 400, "invalid_request_error", "$.tools[0].name"),
    (
        "tool_result for an unknown tool_use_id",
        MESSAGES,
        _orphan_result(),
        400,
        "invalid_request_error",
        "$.messages[2].content[0].tool_use_id",
    ),
    ("metadata 990 deep", MESSAGES, _body(metadata=nested(990)), 400, "invalid_request_error", "$.metadata.a.a"),
    (
        "input_schema 990 deep",
        MESSAGES,
        _body(tools=[{**TOOL, "input_schema": nested(990)}]),
        400,
        "invalid_request_error",
        "$.tools[0].input_schema.a",
    ),
    (
        "tool schema 500 deep",
        MESSAGES,
        _body(tools=[{**TOOL, "input_schema": {"type": "object", "properties": nested(500)}}]),
        400,
        "invalid_request_error",
        "$.tools[0].input_schema.properties.a",
    ),
    (
        "tool_use.input 990 deep",
        MESSAGES,
        _body(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": nested(990)}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]},
            ],
            tools=[TOOL],
        ),
        400,
        "invalid_request_error",
        "$.messages[1].content[0].input.a",
    ),
    (
        "count_tokens 990 deep",
        COUNT,
        _splice(
            json.dumps(
                {
                    "model": "tiny",
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": [{**TOOL, "input_schema": nested(990)}],
                }
            )
        ),
        400,
        "invalid_request_error",
        "$.tools[0].input_schema.a",
    ),
    ("count_tokens over 8 MiB", COUNT, _big_count_tokens(), 413, "request_too_large", None),
]

# Values that are odd but valid: served (a top_k past the vocabulary means "no top-k").
SERVED = [
    ("top_k 49152", _body(top_k=49152)),
    ("top_k 2^63-1", _body(top_k=2**63 - 1)),
    (
        "a schema 60 levels deep",
        _body(tools=[{**TOOL, "input_schema": {"type": "object", "properties": {"p": nested(56)}}}]),
    ),
]
