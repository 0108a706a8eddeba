"""The official anthropic client against a real server process."""

import anthropic
import httpx2 as httpx
import pytest

KEY = "pensieve-local-key"


@pytest.fixture
def sdk(server):
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)


def test_non_streamed_message(sdk):
    msg = sdk.messages.create(model="tiny", max_tokens=8, messages=[{"role": "user", "content": "Hello"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "tiny"
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    u = msg.usage
    assert u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens > 0
    assert 0 < u.output_tokens <= 8


def test_streamed_message_final(sdk):
    with sdk.messages.stream(model="tiny", max_tokens=8, messages=[{"role": "user", "content": "Hello"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == "".join(pieces) and pieces
    assert final.usage.output_tokens == 8 and final.stop_reason == "max_tokens"


def test_auth_token_as_bearer(server):
    sdk = anthropic.Anthropic(base_url=server.url, auth_token=KEY, api_key=None, max_retries=0)
    assert sdk.messages.create(model="t", max_tokens=2, messages=[{"role": "user", "content": "x"}]).content


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "nope"}, {"authorization": "Bearer nope"}])
def test_wrong_or_missing_key_is_401(server, headers):
    r = httpx.post(
        server.url + "/v1/messages",
        headers=headers,
        json={"model": "t", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_sdk_raises_authentication_error(server):
    sdk = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model="t", max_tokens=2, messages=[{"role": "user", "content": "x"}])
