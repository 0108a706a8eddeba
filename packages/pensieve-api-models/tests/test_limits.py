"""The wire limits and cross-field rules: each refusal names its JSON path; what real clients
send (Claude Code's body, a schema at the depth limit) still decodes."""

import json
import sys
import time
from pathlib import Path

import pytest

import pensieve_api_models as api
from pensieve_api_models import limits
from pensieve_api_models.nesting import deeper_than, path_past
from pensieve_core.errors import InvalidRequestError

BASE = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"name": "t", "input_schema": {"type": "object"}}


def decode(**fields):
    return api.decode_messages_request(json.dumps({**BASE, **fields}).encode())


def deep(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


@pytest.mark.parametrize(
    "fields, path",
    [
        ({"max_tokens": 10**48}, "$.max_tokens"),
        ({"max_tokens": limits.MAX_TOKENS_LIMIT + 1}, "$.max_tokens"),
        ({"temperature": 1.01}, "$.temperature"),
        ({"temperature": -0.1}, "$.temperature"),
        ({"top_p": 1.5}, "$.top_p"),
        ({"top_k": 1e30}, "$.top_k"),
        ({"top_k": -1}, "$.top_k"),
        ({"stop_sequences": ["s"] * (limits.MAX_STOP_SEQUENCES + 1)}, "$.stop_sequences"),
        ({"stop_sequences": ["ok", "x" * (limits.MAX_STOP_SEQUENCE_CHARS + 1)]}, "$.stop_sequences[1]"),
        ({"stop_sequences": [""]}, "$.stop_sequences[0]"),
        ({"tools": [{**TOOL, "name": f"t{i}"} for i in range(limits.MAX_TOOLS + 1)]}, "$.tools"),
        (
            {
                "tools": [
                    TOOL,
                    {**TOOL, "name": "u", "input_schema": {"description": "d" * limits.MAX_TOOL_SCHEMA_BYTES}},
                ]
            },
            "$.tools[1].input_schema",
        ),
        ({"tools": [{**TOOL, "name": ""}]}, "$.tools[0].name"),
        ({"tools": [TOOL, TOOL]}, "$.tools[1].name"),
        ({"tool_choice": {"type": "any"}}, "$.tool_choice"),
        ({"tool_choice": {"type": "tool", "name": "t"}}, "$.tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "other"}}, "$.tool_choice.name"),
    ],
)
def test_a_value_past_a_limit_is_a_400_naming_its_path(fields, path):
    with pytest.raises(InvalidRequestError) as info:
        decode(**fields)
    assert f"at `{path}`" in info.value.message


def test_values_at_the_limits_decode():
    req = decode(
        max_tokens=limits.MAX_TOKENS_LIMIT,
        temperature=1.0,
        top_p=0.0,
        top_k=2**63 - 1,
        stop_sequences=["x" * limits.MAX_STOP_SEQUENCE_CHARS] * limits.MAX_STOP_SEQUENCES,
        tools=[{**TOOL, "name": f"t{i}"} for i in range(limits.MAX_TOOLS)],
        tool_choice={"type": "any"},
    )
    assert req.top_k == 2**63 - 1 and len(req.tools) == limits.MAX_TOOLS


@pytest.mark.parametrize(
    "where, path",
    [
        ('"metadata":{}', "$.metadata.a"),
        ('"tools":[{"name":"t","input_schema":{}}]', "$.tools[0].input_schema.a"),
        (
            '"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[1,{"type":"tool_use","id":"i","name":"t","input":{}}]}]',
            "$.messages[1].content[1].input.a",
        ),
    ],
)
def test_nesting_past_the_limit_is_a_400_with_the_path_where_it_was_exceeded(where, path):
    body = (
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],' + where.replace("{}", deep(990)) + "}"
    )
    with pytest.raises(InvalidRequestError) as info:
        api.decode_messages_request(body.encode())
    message = info.value.message
    assert f"more than {limits.MAX_NESTING_DEPTH} levels" in message and f"at `{path}" in message
    assert message.count(".a") <= limits.MAX_NESTING_DEPTH  # the path stops where the limit was passed


def test_nesting_at_the_limit_decodes_and_brackets_in_strings_do_not_count():
    limit = limits.MAX_NESTING_DEPTH
    assert not deeper_than(deep(limit).encode(), limit) and deeper_than(deep(limit + 1).encode(), limit)
    assert path_past(deep(limit + 1).encode(), limit) == "$" + ".a" * limit
    assert not deeper_than(json.dumps(["[[[[{{{{" * 100, '\\"[[[["' * 50]).encode(), 2)
    assert not deeper_than(b'[[1],{"k":[2]},[[]]]', 3) and deeper_than(b'[[1],{"k":[2]},[[[]]]]', 3)
    schema = deep(limit - 4)  # body, tools, the tool, then the schema's own levels
    api.decode_messages_request(
        (
            '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],'
            '"tools":[{"name":"t","input_schema":' + schema + "}]}"
        ).encode()
    )


@pytest.mark.parametrize(
    "name, body",
    [
        (
            "30 MB of text",
            json.dumps({**BASE, "messages": [{"role": "user", "content": 'word [x] {y} \\"z ' * 2_000_000}]}).encode(),
        ),
        ("30 MB of tiny arrays", b"[" + b"[]," * 10_000_000 + b"[]]"),
        ("30 MB of short strings", b"[" + b'"a",' * 7_500_000 + b'"b"]'),
        ("30 MB of chains 20 deep", b"[" + b",".join([b"[" * 20 + b"]" * 20] * 700_000) + b"]"),
    ],
)
def test_the_depth_check_of_a_30_mb_body_costs_well_under_a_second(name, body):
    started = time.process_time()
    assert not deeper_than(body, limits.MAX_NESTING_DEPTH)
    assert time.process_time() - started < 1.5  # msgspec itself takes 0.7-4 s to decode these


def test_claude_code_bodies_are_far_inside_every_limit():
    sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
    from claude_code_body import claude_code_body

    for tool_turns in (False, True):
        body = json.dumps(claude_code_body(tool_turns=tool_turns)).encode()
        assert not deeper_than(body, 12)
        api.decode_messages_request(body)
        api.decode_count_tokens_request(body)


def test_a_tool_result_must_answer_a_tool_use_of_the_assistant_turn_before_it():
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]}
    result = {
        "role": "user",
        "content": [{"type": "text", "text": "x"}, {"type": "tool_result", "tool_use_id": "toolu_1"}],
    }
    system = {"role": "system", "content": "note"}
    decode(messages=[BASE["messages"][0], use, system, {"role": "user", "content": "first"}, result])  # merged turns
    for messages, path in [
        ([result], "$.messages[0].content[1].tool_use_id"),
        (
            [BASE["messages"][0], use, result, {"role": "assistant", "content": "ok"}, result],
            "$.messages[4].content[1].tool_use_id",
        ),
    ]:
        with pytest.raises(InvalidRequestError) as info:
            decode(messages=messages)
        assert "unexpected `tool_use_id` found in `tool_result` blocks: toolu_1" in info.value.message
        assert f"at `{path}`" in info.value.message
