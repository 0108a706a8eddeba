"""Request shapes real clients send, against the live server process."""

import copy

import httpx2 as httpx
import pytest

from pensieve_server.signatures import ThinkingSigner, install_secret

KEY = {"x-api-key": "pensieve-local-key"}


def post(server, body, **kw):
    body = {"model": "tiny", "max_tokens": 3, "temperature": 0, **body}
    return httpx.post(
        server.url + "/v1/messages", headers={**KEY, **kw.pop("headers", {})}, json=body, timeout=60, **kw
    )


def prompt_tokens(message):
    u = message["usage"]
    return u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]


def count(server, body):
    r = httpx.post(server.url + "/v1/messages/count_tokens", headers=KEY, json={"model": "tiny", **body}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["input_tokens"]


EVERY_BLOCK = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look this up", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "t"},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xxx"},
            {"type": "text", "text": "Searching."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "read"}},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "x"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "tool_reference", "tool_name": "Read"}],
            },
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": "failed"},
            {"type": "text", "text": "go on"},
        ],
    },
]


def signed(server, messages):
    """Thinking blocks signed the way this server signs them (its home holds the secret)."""
    signer = ThinkingSigner(install_secret(server.home))
    for message in messages:
        for block in message["content"]:
            if block["type"] == "thinking":
                block["signature"] = signer.sign(block["thinking"])
    return messages


def test_every_block_type_except_media_is_accepted(server):
    messages = [EVERY_BLOCK[0] | {"content": EVERY_BLOCK[0]["content"][:1]}, *copy.deepcopy(EVERY_BLOCK[1:])]
    r = post(server, {"messages": signed(server, messages)})
    assert r.status_code == 200, r.text


def test_a_thinking_block_with_a_forged_signature_is_a_400(server):
    messages = [EVERY_BLOCK[0] | {"content": EVERY_BLOCK[0]["content"][:1]}, *copy.deepcopy(EVERY_BLOCK[1:])]
    signed(server, messages)[1]["content"][0]["thinking"] = "altered"
    r = post(server, {"messages": messages})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
    }


@pytest.mark.parametrize("kind", ["image", "document"])
def test_media_for_a_text_only_model_is_a_clear_400(server, kind):
    source = {"type": "base64", "media_type": "image/png" if kind == "image" else "application/pdf", "data": "AA=="}
    r = post(server, {"messages": [{"role": "user", "content": [{"type": kind, "source": source}]}]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "text-only" in message and kind in message and "model '" in message


def test_fields_claude_code_sends_and_unknown_ones_are_accepted(server):
    r = post(
        server,
        {
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u"},
            "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "medium"},
            "tools": [
                {
                    "name": "Later",
                    "description": "d",
                    "input_schema": {"type": "object"},
                    "defer_loading": True,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "a_field_from_the_future": {"x": 1},
        },
        headers={"anthropic-beta": "claude-code-20250219,some-beta-from-2027-01-01", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200, r.text


def test_system_as_string_or_blocks_renders_the_same(server):
    msgs = [{"role": "user", "content": "hi"}]
    assert count(server, {"system": "A\n\nB", "messages": msgs}) == count(
        server, {"system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}], "messages": msgs}
    )


def test_system_messages_anywhere_including_last(server):
    r = post(
        server,
        {
            "messages": [
                {"role": "system", "content": "first"},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "# Environment\n - cwd: /x"}]},
            ]
        },
    )
    assert r.status_code == 200, r.text


def test_consecutive_same_role_turns_merge(server):
    split = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    joined = [{"role": "user", "content": "a\n\nb"}]
    assert count(server, {"messages": split}) == count(server, {"messages": joined})


def test_final_assistant_turn_is_continued(chat_server):
    base = {"model": "m", "max_tokens": 20, "temperature": 0}
    plain = httpx.post(
        chat_server.url + "/v1/messages",
        headers=KEY,
        json={**base, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    ).json()
    assert plain["content"][0]["text"] == "Hello! How can I help?"
    # Prefilled with the reply's first word, the model goes on from there.
    cont = httpx.post(
        chat_server.url + "/v1/messages",
        headers=KEY,
        json={**base, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]},
        timeout=60,
    ).json()
    assert cont["content"][0]["text"] == "! How can I help?"
    assert prompt_tokens(cont) == prompt_tokens(plain) + 1


def test_billing_line_never_reaches_the_prompt(server):
    def body(suffix):
        return {
            "system": [
                {
                    "type": "text",
                    "text": f"x-anthropic-billing-header: cc_version=2.1.332.{suffix}; cc_entrypoint=cli;",
                },
                {"type": "text", "text": "You are Claude Code."},
            ],
            "messages": [{"role": "user", "content": "hi"}],
        }

    without = {
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert count(server, body("0b8")) == count(server, body("f00d")) == count(server, without)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"max_tokens": "3", "messages": [{"role": "user", "content": "x"}]}, "$.max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "$.messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "$.messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"description": "no name"}]}, "$.tools[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 7}, "temperature"),
        ({"messages": []}, "$.messages"),
    ],
)
def test_validation_errors_are_400_with_the_json_path(server, body, fragment):
    r = post(server, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and fragment in err["message"]


@pytest.mark.parametrize("name", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-4-5", "gpt-5", "anything"])
def test_model_names_select_the_served_model_and_are_echoed(server, name):
    r = post(server, {"model": name, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["model"] == name
