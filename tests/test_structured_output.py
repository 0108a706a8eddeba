"""Structured outputs through the live server and the official client: the text answer of a
random-weight model parses and validates; a schema we cannot enforce is a 400 naming why."""

import json

import anthropic
import jsonschema
import pytest

TITLE = {  # the shape of Claude Code's session-title request
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 16},
        "words": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "words"],
}
QUESTION = [{"role": "user", "content": "Title this session."}]


def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key="pensieve-local-key", max_retries=0)


def test_the_text_answer_parses_and_validates_against_output_config_format(server):
    with client(server) as sdk:
        message = sdk.messages.create(
            model="tiny",
            max_tokens=300,
            messages=QUESTION,
            extra_body={"temperature": 1.0},
            output_config={"format": {"type": "json_schema", "schema": TITLE}},
        )
    assert message.stop_reason == "end_turn"
    (block,) = message.content
    jsonschema.validate(json.loads(block.text), TITLE)


def test_the_beta_output_format_shape_streams_a_valid_answer_too(server):
    format = {"type": "json_schema", "schema": TITLE}
    with (
        client(server) as sdk,
        sdk.messages.stream(
            model="tiny", max_tokens=300, messages=QUESTION, extra_body={"output_format": format}
        ) as stream,
    ):
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(message.content[0].text), TITLE)


@pytest.mark.parametrize("stream", [False, True])
def test_a_schema_with_an_unsupported_keyword_is_a_400_naming_it(server, stream):
    schema = {"type": "object", "not": {"required": ["title"]}}
    with client(server) as sdk, pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(
            model="tiny",
            max_tokens=30,
            messages=QUESTION,
            stream=stream,
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert '"not"' in caught.value.body["error"]["message"]
    assert "output_config.format.schema" in caught.value.body["error"]["message"]
