import msgspec
import pytest

import pensieve_claude_types as ct

decode_message = msgspec.json.Decoder(ct.MessageParam)


def test_blocks_decode_by_type_tag():
    msg = decode_message.decode(
        b'{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},'
        b'{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"tool_reference","tool_name":"Read"}]},'
        b'{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}'
    )
    text, result, image = msg.content
    assert isinstance(text, ct.TextBlockParam) and text.cache_control.type == "ephemeral"
    assert isinstance(result.content[0], ct.ToolReferenceBlockParam)
    assert isinstance(image.source, ct.Base64Source)


def test_unknown_block_type_is_rejected_with_its_path():
    with pytest.raises(msgspec.ValidationError, match=r"\$\.content\[0\]"):
        decode_message.decode(b'{"role":"user","content":[{"type":"hologram"}]}')


def test_unknown_fields_are_ignored():
    msg = decode_message.decode(b'{"role":"assistant","content":"x","future_field":1}')
    assert msg.content == "x"


def test_message_encodes_with_type_and_all_usage_fields():
    m = ct.Message(id="msg_1", model="m", content=[ct.TextBlock(text="hi")], usage=ct.Usage(3, 1))
    out = msgspec.json.decode(msgspec.json.encode(m))
    assert out["type"] == "message" and out["role"] == "assistant"
    assert out["content"] == [{"type": "text", "text": "hi"}]
    assert set(out["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


def test_tool_choice_and_thinking_are_tagged_unions():
    tc = msgspec.json.decode(b'{"type":"tool","name":"get"}', type=ct.ToolChoice)
    assert isinstance(tc, ct.ToolChoiceTool) and tc.name == "get"
    th = msgspec.json.decode(b'{"type":"enabled","budget_tokens":2048}', type=ct.ThinkingConfig)
    assert isinstance(th, ct.ThinkingEnabled) and th.budget_tokens == 2048


def test_public_names_are_exactly_exported():
    assert sorted(ct.__all__) == sorted(n for n in vars(ct) if not n.startswith("_") and n[0].isupper())


def test_a_system_message_may_carry_its_own_effort_and_no_content():
    msg = decode_message.decode(b'{"role":"system","content":[],"output_config":{"effort":"xhigh"}}')
    assert msg.output_config == ct.MessageOutputConfig(effort="xhigh") and msg.content == []
