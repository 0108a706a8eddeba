import msgspec
import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError
from pensieve_inference import chat_messages


def request(messages, system=None):
    msgs = msgspec.convert(messages, list[MessageParam])
    sys_ = msgspec.convert(system, str | list | None) if not isinstance(system, list) else msgspec.convert(
        system, list[__import__("pensieve_claude_types").TextBlockParam]
    )
    return GenerationRequest(messages=msgs, max_tokens=5, system=sys_)


def test_billing_line_is_dropped_and_system_blocks_joined():
    req = request(
        [{"role": "user", "content": "hi"}],
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief."},
        ],
    )
    messages, prefill = chat_messages(req, "m")
    assert messages[0] == {"role": "system", "content": "You are Claude Code.\n\nBe brief."}
    assert prefill == ""


def test_same_role_turns_merge_and_system_messages_join_the_system_text():
    req = request(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
            {"role": "system", "content": "late system note"},
        ],
        system="top",
    )
    messages, _ = chat_messages(req, "m")
    assert messages == [
        {"role": "system", "content": "top\n\nlate system note"},
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]


def test_final_assistant_turn_is_a_prefill():
    req = request([{"role": "user", "content": "Count"}, {"role": "assistant", "content": "1, 2,"}])
    messages, prefill = chat_messages(req, "m")
    assert messages == [{"role": "user", "content": "Count"}]
    assert prefill == "1, 2,"


def test_image_for_a_text_only_model_names_the_model():
    req = request(
        [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]
    )
    with pytest.raises(InvalidRequestError, match="'tiny' is text-only"):
        chat_messages(req, "tiny")


def test_tool_blocks_render_as_text():
    req = request(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "tool_reference", "tool_name": "Read"}]}]},
        ]
    )
    messages, _ = chat_messages(req, "m")
    assert '"name": "get"' in messages[1]["content"] and "Oslo" in messages[1]["content"]
    assert "Read" in messages[2]["content"]
