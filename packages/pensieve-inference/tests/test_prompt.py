import msgspec
import pytest

from pensieve_claude_types import MessageParam, TextBlockParam, Tool
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError
from pensieve_inference import PromptRenderer, build_conversation, offered_tools


def request(messages, system=None, **kw):
    if isinstance(system, list):
        system = msgspec.convert(system, list[TextBlockParam])
    return GenerationRequest(messages=msgspec.convert(messages, list[MessageParam]), max_tokens=5, system=system, **kw)


def test_billing_line_is_dropped_and_system_blocks_joined():
    req = request(
        [{"role": "user", "content": "hi"}],
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief."},
        ],
    )
    system, turns, prefill = build_conversation(req, "m", native_tools=False)
    assert system == "You are Claude Code.\n\nBe brief."
    assert turns == [{"role": "user", "content": "hi"}] and prefill == ""


def test_same_role_turns_merge_and_late_system_messages_stay_in_place():
    req = request(
        [
            {"role": "system", "content": "early"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
            {"role": "system", "content": "late note"},
        ],
        system="top",
    )
    system, turns, _ = build_conversation(req, "m", native_tools=False)
    assert system == "top\n\nearly"
    assert turns == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d\n\n<system-reminder>\nlate note\n</system-reminder>"},
    ]


def test_final_assistant_turn_is_a_prefill(engine):
    req = request([{"role": "user", "content": "Count"}, {"role": "assistant", "content": "1, 2,"}])
    _, turns, prefill = build_conversation(req, "m", native_tools=False)
    assert turns == [{"role": "user", "content": "Count"}] and prefill == "1, 2,"
    text = PromptRenderer(engine.loaded.tokenizer, "m").text(req)
    assert text.endswith("<|im_start|>assistant\n1, 2,")


def test_image_for_a_text_only_model_names_the_model():
    req = request(
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}],
            }
        ]
    )
    with pytest.raises(InvalidRequestError, match="'tiny' is text-only and cannot read image"):
        build_conversation(req, "tiny", native_tools=False)


TOOL_TURNS = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Oslo"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": [{"type": "text", "text": "rain"}, {"type": "tool_reference", "tool_name": "Read"}],
            }
        ],
    },
]


def test_tool_turns_as_text_for_templates_without_tools():
    _, turns, _ = build_conversation(request(TOOL_TURNS), "m", native_tools=False)
    assert (
        turns[1]["content"]
        == 'Let me look.\n\n<tool_call>\n{"name": "get", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    assert turns[2]["content"] == "<tool_result>\nrain\nTool Read is now available.\n</tool_result>"


def test_tool_turns_native_for_tool_aware_templates():
    _, turns, _ = build_conversation(request(TOOL_TURNS), "m", native_tools=True)
    assert turns[1]["tool_calls"][0]["function"] == {"name": "get", "arguments": {"city": "Oslo"}}
    assert turns[2] == {"role": "tool", "tool_call_id": "t1", "content": "rain\nTool Read is now available."}


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def test_tools_are_described_in_the_system_text_without_template_support(engine):
    from pensieve_claude_types import Tool

    tools = msgspec.convert(TOOLS, list[Tool])
    renderer = PromptRenderer(engine.loaded.tokenizer, "m")
    assert not renderer.native_tools
    text = renderer.text(request([{"role": "user", "content": "hi"}], system="S", tools=tools))
    assert text.startswith("<|im_start|>system\nS\n\n# Tools")
    assert '"name": "get_weather"' in text and "<tool_call>" in text
    from pensieve_claude_types import ToolChoiceNone

    none = renderer.text(
        request([{"role": "user", "content": "hi"}], system="S", tools=tools, tool_choice=ToolChoiceNone())
    )
    assert "get_weather" not in none


def test_a_conversation_with_only_system_text_is_an_invalid_request(engine):
    req = request([{"role": "system", "content": "only a system note"}])
    with pytest.raises(InvalidRequestError, match="no user or assistant content"):
        PromptRenderer(engine.loaded.tokenizer, "m").text(req)


CACHED = {"type": "ephemeral"}


def test_cache_end_is_where_the_message_with_the_last_breakpoint_ends(engine):
    renderer = PromptRenderer(engine.loaded.tokenizer, "m")
    tok = engine.loaded.tokenizer

    def cached_text(req):
        rendered = renderer.prompt(req)
        return tok.decode(rendered.tokens[: rendered.cache_end])

    plain = [{"role": "user", "content": "hi"}]
    assert renderer.prompt(request(plain, system="S")).cache_end == 0
    # A breakpoint on a tool covers the system turn, where the tools are described.
    from pensieve_claude_types import Tool

    tools = msgspec.convert([{**TOOLS[0], "cache_control": CACHED}], list[Tool])
    with_tools = renderer.prompt(request(plain, system="S", tools=tools))
    assert with_tools.cache_end == with_tools.system_end > 0
    assert "get_weather" in tok.decode(with_tools.tokens[: with_tools.cache_end])
    # Merged same-role messages: creation stops where the marked one ends.
    merged = [
        {"role": "user", "content": [{"type": "text", "text": "first", "cache_control": CACHED}]},
        {"role": "user", "content": "second"},
    ]
    assert cached_text(request(merged)).endswith("user\nfirst")
    # A breakpoint on a prefill covers the prefill itself.
    prefill = [*plain, {"role": "assistant", "content": [{"type": "text", "text": "Sure", "cache_control": CACHED}]}]
    rendered = renderer.prompt(request(prefill))
    assert rendered.cache_end == len(rendered.tokens) and tok.decode(rendered.tokens).endswith("assistant\nSure")


def _tools(*specs):
    return msgspec.convert(
        [{"name": n, "description": f"{n} does things.", "input_schema": {"type": "object"}, **kw} for n, kw in specs],
        list[Tool],
    )


SEARCH_TURNS = [
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {"q": "lint"}}]},
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "tool_reference", "tool_name": "Lint"}]}
        ],
    },
]


def test_a_deferred_tool_is_shown_where_it_is_loaded_and_the_prompt_before_stays(engine):
    """As the API expands a tool_reference: a deferred tool is not in the tool list, then appears
    (its definition) in the result that loads it, so everything before that turn is unchanged."""
    renderer = PromptRenderer(engine.loaded.tokenizer, "m")
    first = [{"role": "user", "content": "Lint the repo."}]
    before = request(first, tools=_tools(("ToolSearch", {}), ("Lint", {"defer_loading": True})))
    # Claude Code lists more deferred tools as it goes: listing one changes nothing either.
    after = request(
        [*first, *SEARCH_TURNS],
        tools=_tools(("ToolSearch", {}), ("Lint", {"defer_loading": True}), ("Format", {"defer_loading": True})),
    )
    assert [t.name for t in offered_tools(before)] == ["ToolSearch"]
    assert [t.name for t in offered_tools(after)] == ["ToolSearch", "Lint"]
    shown_before, shown_after = renderer.text(before), renderer.text(after)
    assert "Lint does things." not in shown_before and "Format" not in shown_after
    head = shown_before[: shown_before.rindex("<|im_start|>assistant")]
    assert shown_after.startswith(head)
    assert "Tool Lint is now available.\nLint does things.\nInput schema: " in shown_after[len(head) :]
    ids_before, ids_after = renderer.prompt(before).tokens, renderer.prompt(after).tokens
    assert ids_after[: len(ids_before) - 3] == ids_before[:-3]  # all but the generation prompt
