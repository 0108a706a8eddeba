"""Bodies shaped like Claude Code's decode and render, and the billing line's suffix never
changes the prompt."""

import msgspec
import pytest
from claude_code_body import TOOL_NAMES, claude_code_body

from pensieve_api_models import decode_messages_request
from pensieve_inference import PromptRenderer
from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model


@pytest.fixture(scope="module", params=["text-tools", "native-tools"])
def renderer(request, tmp_path_factory):
    template = TOOL_CHATML_TEMPLATE if request.param == "native-tools" else None
    kwargs = {"chat_template": template, "tool_tokens": True} if template else {}
    path = build_tiny_model(tmp_path_factory.mktemp(request.param), **kwargs)
    loaded = load_model(resolve_reference(str(path)), HuggingFaceHub())
    return PromptRenderer(loaded.tokenizer, "tiny")


def render(renderer, **kw):
    body = decode_messages_request(msgspec.json.encode(claude_code_body(**kw)))
    return renderer.text(body.to_generation())


@pytest.mark.parametrize("tool_turns", [False, True])
def test_claude_code_bodies_decode_and_render(renderer, tool_turns):
    body = decode_messages_request(msgspec.json.encode(claude_code_body(tool_turns=tool_turns)))
    assert len(body.tools) == 12 and body.tools[10].defer_loading is True
    assert body.messages[-1].role == "system"
    text = renderer.text(body.to_generation())
    assert "x-anthropic-billing-header" not in text
    # A deferred tool (defer_loading) stays out of the prompt until a tool_reference loads it.
    assert all(name in text for name in TOOL_NAMES if name != "DeferredToolPlaceholder")
    assert "DeferredToolPlaceholder" not in text
    # The late system message stays at the end, after the user's words.
    assert text.index("Say hi") < text.index("# Environment")
    if tool_turns:
        assert "Tool Read is now available." in text


@pytest.mark.parametrize("tool_turns", [False, True])
def test_billing_suffix_does_not_change_the_prompt(renderer, tool_turns):
    a = render(renderer, billing_suffix="0b8", tool_turns=tool_turns)
    b = render(renderer, billing_suffix="f3c", tool_turns=tool_turns)
    assert a == b


def test_prefix_is_stable_across_turns(renderer):
    # Turn N+1's prompt starts with everything of turn N before the late system message.
    first = render(renderer, tool_turns=False)
    later = render(renderer, tool_turns=True)
    stable = first[: first.index("Say hi") + len("Say hi")]
    assert later.startswith(stable)
