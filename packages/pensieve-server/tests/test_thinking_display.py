"""display "omitted": thinking blocks go out with empty text and a signature that verifies when
the block comes back as the client holds it (text still empty)."""

import pytest

from pensieve_api_models import ContentBlockDelta, SignatureDelta, ThinkingDeltaPayload
from pensieve_claude_types import MessageParam, ThinkingBlock, ThinkingBlockParam
from pensieve_core import Finished, Started, TextDelta, ThinkingDelta, ThinkingEnd
from pensieve_core.errors import InvalidRequestError
from pensieve_server.assembly import MessageAssembler
from pensieve_server.signatures import ThinkingSigner

EVENTS = [
    Started(prompt_tokens=3),
    ThinkingDelta(thinking="Let me "),
    ThinkingDelta(thinking="see."),
    ThinkingEnd(),
    TextDelta(text="Yes."),
    Finished(stop_reason="end_turn", output_tokens=5),
]


def _run(display):
    signer = ThinkingSigner(b"k" * 32)
    assembler = MessageAssembler("msg_1", "m", signer, display=display)
    stream = [out for event in EVENTS for out in assembler.feed(event)]
    return signer, assembler.message.content[0], stream


@pytest.mark.parametrize("display", ["omitted", "updates"])
def test_omitted_thinking_streams_no_text_and_signs_the_empty_block(display):
    signer, block, stream = _run(display)
    assert isinstance(block, ThinkingBlock) and block.thinking == ""
    deltas = [e.delta for e in stream if isinstance(e, ContentBlockDelta) and e.index == 0]
    assert not [d for d in deltas if isinstance(d, ThinkingDeltaPayload)], "no thinking_delta, as the API"
    assert deltas == [SignatureDelta(signature=block.signature)]
    assert signer.verify("", block.signature)
    sent_back = MessageParam(role="assistant", content=[ThinkingBlockParam(thinking="", signature=block.signature)])
    signer.check([sent_back])  # accepted


def test_an_omitted_signature_does_not_pass_for_any_text_nor_under_another_secret():
    signer, block, _ = _run("omitted")
    assert not signer.verify("Let me see.", block.signature)
    assert not ThinkingSigner(b"x" * 32).verify("", block.signature)
    with pytest.raises(InvalidRequestError, match="Invalid `signature`"):
        signer.check([MessageParam(role="assistant", content=[ThinkingBlockParam(thinking="", signature="AAAA")])])


def test_summarized_is_unchanged_and_its_signature_covers_the_text():
    signer, block, _ = _run("summarized")
    assert block.thinking == "Let me see." and signer.verify("Let me see.", block.signature)
    assert not signer.verify("", block.signature)
