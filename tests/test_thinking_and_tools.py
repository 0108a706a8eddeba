"""Thinking blocks and forced tool calls through the live server and the official client."""

import json

import anthropic
import jsonschema

from pensieve_server.signatures import ThinkingSigner, install_secret

READ = {
    "name": "read_file",
    "description": "Read a file.",
    "input_schema": {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "maxLength": 30},
            "limit": {"type": "integer", "minimum": 1, "maximum": 99},
        },
        "required": ["file_path"],
    },
}


def client(server):
    """Used as a context manager: a client left open warns about its socket later."""
    return anthropic.Anthropic(base_url=server.url, api_key="pensieve-local-key", max_retries=0)


def test_thinking_then_text_with_a_signature_that_verifies(thinking_server):
    question = {"role": "user", "content": "Think, then answer."}
    thinking = {"type": "enabled", "budget_tokens": 10}
    with client(thinking_server) as sdk:
        message = sdk.messages.create(model="tiny", max_tokens=30, thinking=thinking, messages=[question])
        assert [b.type for b in message.content] == ["thinking", "text"]
        block = message.content[0]
        assert block.thinking and block.signature
        assert ThinkingSigner(install_secret(thinking_server.home)).verify(block.thinking, block.signature)
        # The block goes back in the next turn as Claude Code sends it, and is accepted.
        follow_up = sdk.messages.create(
            model="tiny",
            max_tokens=30,
            thinking=thinking,
            messages=[question, {"role": "assistant", "content": message.content}, {"role": "user", "content": "And?"}],
        )
    assert follow_up.content[0].type == "thinking"


def test_streamed_thinking_sends_its_signature_before_the_block_stops(thinking_server):
    with (
        client(thinking_server) as sdk,
        sdk.messages.stream(
            model="tiny",
            max_tokens=30,
            thinking={"type": "enabled", "budget_tokens": 8},
            messages=[{"role": "user", "content": "Think."}],
        ) as stream,
    ):
        events = list(stream)
        final = stream.get_final_message()
    order = [
        (e.type, getattr(getattr(e, "delta", None), "type", None)) for e in events if e.type.startswith("content_block")
    ]
    first_stop = order.index(("content_block_stop", None))
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    assert order[first_stop - 1] == ("content_block_delta", "signature_delta")
    assert {d for _, d in order[1 : first_stop - 1]} == {"thinking_delta"}
    assert [b.type for b in final.content] == ["thinking", "text"]


def test_a_forced_call_streams_its_input_and_validates(server):
    """The random-weight model (a template with no tools: the generic convention)."""
    with (
        client(server) as sdk,
        sdk.messages.stream(
            model="tiny",
            max_tokens=80,
            tools=[READ],
            tool_choice={"type": "tool", "name": "read_file"},
            messages=[{"role": "user", "content": "Open the notes."}],
        ) as stream,
    ):
        deltas = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and call.name == "read_file"
    assert len(deltas) > 1, "the input streamed while it was written"
    assert json.loads("".join(deltas)) == call.input
    jsonschema.validate(call.input, READ["input_schema"])


def _thinking_blocks(sdk, effort=None, system_effort=None, max_tokens=12):
    messages = [{"role": "user", "content": "Think, then answer."}]
    if system_effort:  # as Claude Code sends it: a system message with only its own output_config
        messages.append({"role": "system", "content": [], "output_config": {"effort": system_effort}})
    extra = {"output_config": {"effort": effort}} if effort else {}
    message = sdk.messages.create(
        model="tiny", max_tokens=max_tokens, thinking={"type": "adaptive"}, messages=messages, extra_body=extra
    )
    return [b for b in message.content if b.type == "thinking"]


def test_low_effort_turns_adaptive_thinking_off_and_high_keeps_it(thinking_server):
    with client(thinking_server) as sdk:
        assert not _thinking_blocks(sdk, effort="low")
        assert _thinking_blocks(sdk, effort="high"), "the template opened thinking: high keeps it"
        assert _thinking_blocks(sdk), "no effort is high, as in the API"


def test_a_system_messages_own_effort_wins_over_the_top_level_one(thinking_server):
    with client(thinking_server) as sdk:
        assert not _thinking_blocks(sdk, effort="high", system_effort="low")
        assert _thinking_blocks(sdk, effort="low", system_effort="max")


def test_omitted_display_returns_empty_thinking_with_a_signature_that_is_accepted_back(thinking_server):
    question = {"role": "user", "content": "Think, then answer."}
    thinking = {"type": "adaptive", "display": "omitted"}
    with client(thinking_server) as sdk:
        message = sdk.messages.create(model="tiny", max_tokens=20, thinking=thinking, messages=[question])
        block = message.content[0]
        assert block.type == "thinking" and block.thinking == "" and block.signature
        assert message.usage.output_tokens > 1, "the model still thought"
        assert ThinkingSigner(install_secret(thinking_server.home)).verify("", block.signature)
        follow_up = sdk.messages.create(
            model="tiny",
            max_tokens=20,
            thinking=thinking,
            messages=[question, {"role": "assistant", "content": message.content}, {"role": "user", "content": "And?"}],
        )
        assert follow_up.content[0].type == "thinking", "the empty block was accepted"
        with sdk.messages.stream(model="tiny", max_tokens=20, thinking=thinking, messages=[question]) as stream:
            deltas = [e.delta.type for e in stream if e.type == "content_block_delta" and e.index == 0]
            final = stream.get_final_message()
    assert deltas == ["signature_delta"], "no thinking_delta, as the API streams an omitted block"
    assert final.content[0].thinking == "" and final.content[0].signature
