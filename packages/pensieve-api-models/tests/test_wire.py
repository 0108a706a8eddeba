import re

import msgspec
import pytest

import pensieve_api_models as api
from pensieve_claude_types import Message, TextBlock, Usage
from pensieve_core.errors import InvalidRequestError


def test_decodes_a_minimal_request_and_ignores_unknown_fields():
    req = api.decode_messages_request(
        b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],'
        b'"context_management":{"edits":[]},"output_config":{"effort":"high"}}'
    )
    assert req.model == "m" and req.max_tokens == 5 and req.stream is False


@pytest.mark.parametrize(
    "field",
    [
        b'"output_config":{"effort":"low","format":{"type":"json_schema","schema":{"type":"integer"}}}',
        b'"output_format":{"type":"json_schema","schema":{"type":"integer"}}',  # the earlier beta's shape
    ],
)
def test_a_json_schema_output_format_reaches_the_engine_as_its_schema(field):
    body = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],' + field + b"}"
    assert api.decode_messages_request(body).to_generation().output_schema == {"type": "integer"}


@pytest.mark.parametrize(
    "body, path",
    [
        (
            b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],'
            b'"output_config":{"format":{"type":"xml","schema":{}}}}',
            "$.output_config.format",
        ),
        (b'{"model":"m","max_tokens":"5","messages":[]}', "$.max_tokens"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}]}', "max_tokens"),
        (b'{"model":"m","max_tokens":5,"messages":[{"role":"robot","content":"x"}]}', "$.messages[0].role"),
        (b'{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}', "$.max_tokens"),
        (b'{"model":"m","max_tokens":5,"messages":[]}', "$.messages"),
    ],
)
def test_validation_errors_carry_the_json_path(body, path):
    with pytest.raises(InvalidRequestError) as info:
        api.decode_messages_request(body)
    assert path in info.value.message


def test_invalid_json_is_an_invalid_request():
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        api.decode_messages_request(b"{nope")


def test_sse_encoding_names_the_event_and_repeats_the_type():
    start = api.MessageStart(message=Message(id="msg_1", model="m", content=[], usage=Usage()))
    raw = api.encode_event(start)
    head, data = raw.split(b"\n", 1)
    assert head == b"event: message_start"
    assert raw.endswith(b"\n\n")
    payload = msgspec.json.decode(data.removeprefix(b"data: ").strip())
    assert payload["type"] == "message_start"
    assert payload["message"]["stop_reason"] is None
    delta = api.ContentBlockDelta(index=0, delta=api.TextDeltaPayload(text="x"))
    assert b'"delta":{"type":"text_delta","text":"x"}' in api.encode_event(delta)
    block = api.ContentBlockStart(index=0, content_block=TextBlock(text=""))
    assert b'"content_block":{"type":"text","text":""}' in api.encode_event(block)


def test_error_envelope_shape():
    env = api.envelope_for(InvalidRequestError("bad"), "req_1")
    assert msgspec.json.decode(api.encode_envelope(env)) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
        "request_id": "req_1",
    }


def test_empty_content_is_refused_except_for_a_final_assistant_prefill():
    with pytest.raises(InvalidRequestError, match=r"\$\.messages\[0\]\.content"):
        api.decode_count_tokens_request(b'{"model":"m","messages":[{"role":"user","content":[]}]}')
    with pytest.raises(InvalidRequestError, match=r"\$\.messages\[0\]\.content"):
        api.decode_messages_request(
            b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":""},{"role":"user","content":"x"}]}'
        )
    ok = api.decode_messages_request(
        b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":""}]}'
    )
    assert ok.messages[-1].content == ""


def _body(*parts: bytes) -> bytes:
    return b'{"model":"m","max_tokens":64,' + b",".join(parts) + b"}"


USER = b'{"role":"user","content":"hi"}'


@pytest.mark.parametrize(
    ("parts", "effort"),
    [
        ((b'"messages":[' + USER + b"]",), None),
        ((b'"messages":[' + USER + b"]", b'"output_config":{"effort":"low"}'), "low"),
        # Claude Code's shape: a system message with no content, only its own output_config.
        (
            (
                b'"messages":[' + USER + b',{"role":"system","content":[],"output_config":{"effort":"max"}}]',
                b'"output_config":{"effort":"medium"}',
            ),
            "max",
        ),
        ((b'"messages":[{"role":"system","content":"s","output_config":{"effort":"xhigh"}},' + USER + b"]",), "xhigh"),
    ],
)
def test_effort_reaches_the_engine_the_last_messages_own_winning(parts, effort):
    assert api.decode_messages_request(_body(*parts)).to_generation().effort == effort
    counted = api.decode_count_tokens_request(_body(*parts).replace(b'"max_tokens":64,', b""))
    assert counted.to_generation().effort == effort, "count_tokens renders as generation does"


@pytest.mark.parametrize(
    ("field", "path"),
    [
        (b'"output_config":{"effort":"extreme"}', "$.output_config.effort"),
        (b'"thinking":{"type":"adaptive","display":"full"}', "$.thinking.display"),
    ],
)
def test_unknown_effort_or_display_is_an_invalid_request_with_its_path(field, path):
    with pytest.raises(InvalidRequestError, match=re.escape(path)):
        api.decode_messages_request(_body(b'"messages":[' + USER + b"]", field))


def test_a_message_level_effort_is_checked_with_its_path():
    with pytest.raises(InvalidRequestError, match=re.escape("$.messages[1].output_config.effort")):
        api.decode_messages_request(
            _body(b'"messages":[' + USER + b',{"role":"system","content":[],"output_config":{"effort":"huge"}}]')
        )


@pytest.mark.parametrize(
    ("thinking", "display"),
    [
        (b"", "summarized"),
        (b',"thinking":{"type":"adaptive"}', "summarized"),
        (b',"thinking":{"type":"adaptive","display":"omitted"}', "omitted"),
        (b',"thinking":{"type":"enabled","budget_tokens":10,"display":"omitted"}', "omitted"),
    ],
)
def test_thinking_display_is_read_from_the_thinking_config(thinking, display):
    assert api.decode_messages_request(_body(b'"messages":[' + USER + b"]" + thinking)).thinking_display == display
