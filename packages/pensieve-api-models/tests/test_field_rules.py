"""Field rules are the wire Structs' msgspec Meta (msgspec's own message, with the path, is the
400's); rules across fields are validate()'s. Both run at decoding, before any engine sees the body."""

import json

import pytest

import pensieve_api_models as api
from pensieve_core.errors import InvalidRequestError

BASE = {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
TOOLS = [{"name": "t", "input_schema": {"type": "object"}}]


def refusal(decode, **fields):
    with pytest.raises(InvalidRequestError) as info:
        decode(json.dumps({**BASE, **fields}).encode())
    assert info.value.error_type == "invalid_request_error" and info.value.status == 400
    return info.value.message


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"temperature": 3}, "Expected `float` <= 1.0 - at `$.temperature`"),
        ({"temperature": "hot"}, "Expected `float | null`, got `str` - at `$.temperature`"),
        ({"top_p": 2}, "Expected `float` <= 1.0 - at `$.top_p`"),
        ({"top_p": -0.5}, "Expected `float` >= 0.0 - at `$.top_p`"),
        ({"max_tokens": 0}, "Expected `int` >= 1 - at `$.max_tokens`"),
        ({"top_k": 2.5}, "Expected `int | null`, got `float` - at `$.top_k`"),
    ],
)
def test_a_sampling_field_out_of_range_is_msgspecs_message_with_its_path(fields, message):
    assert refusal(api.decode_messages_request, **fields) == message


@pytest.mark.parametrize(
    "fields, path, words",
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 20}}, "$.thinking.budget_tokens", "(20 <= 20)"),
        ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "$.thinking.budget_tokens", "Expected `int` >= 1"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 8}, "tools": TOOLS, "tool_choice": {"type": "any"}},
            "$.tool_choice",
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 8},
                "tools": TOOLS,
                "tool_choice": {"type": "tool", "name": "t"},
            },
            "$.tool_choice",
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
        (
            {"thinking": {"type": "adaptive"}, "tools": TOOLS, "tool_choice": {"type": "any"}},
            "$.tool_choice",
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
        (
            {
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": "high"},
                "tools": TOOLS,
                "tool_choice": {"type": "any"},
            },
            "$.tool_choice",
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
    ],
)
def test_the_apis_thinking_rules_are_refused_at_decoding_with_the_path(fields, path, words):
    message = refusal(api.decode_messages_request, **fields)
    assert words in message and message.endswith(f" - at `{path}`")


@pytest.mark.parametrize(
    "fields",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 19}},  # the most that leaves room to answer
        {"thinking": {"type": "enabled", "budget_tokens": 8}, "tools": TOOLS, "tool_choice": {"type": "auto"}},
        # Low effort turns adaptive thinking off: nothing thinks, so the call may be forced.
        {
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "low"},
            "tools": TOOLS,
            "tool_choice": {"type": "any"},
        },
        {"thinking": {"type": "disabled"}, "tools": TOOLS, "tool_choice": {"type": "tool", "name": "t"}},
    ],
)
def test_thinking_settings_the_api_allows_decode(fields):
    assert api.decode_messages_request(json.dumps({**BASE, **fields}).encode()).thinking is not None


def test_count_tokens_keeps_the_rules_of_the_fields_it_shares_with_messages():
    def count(**fields):
        return refusal(api.decode_count_tokens_request, **fields)

    assert count(thinking={"type": "enabled", "budget_tokens": 0}).endswith("at `$.thinking.budget_tokens`")
    assert count(tools=TOOLS, tool_choice={"type": "tool", "name": "u"}).endswith("at `$.tool_choice.name`")
    assert count(tools=[*TOOLS, *TOOLS]).endswith("at `$.tools[1].name`")
    assert count(messages=[]).endswith("at `$.messages`")
    # No max_tokens to compare with: any budget of at least one token is counted.
    body = {**BASE, "thinking": {"type": "enabled", "budget_tokens": 10**6}}
    assert api.decode_count_tokens_request(json.dumps(body).encode()).thinking.budget_tokens == 10**6
