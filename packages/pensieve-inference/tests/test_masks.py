"""A batch step's grammar masks are filled together (masks.py): the same tokens as each
request decoding alone, with one parallel fill serving several rows."""

import asyncio

import numpy as np
import pytest

from pensieve_claude_types import MessageParam, Tool, ToolChoiceAny, ToolChoiceTool
from pensieve_core import Finished, GenerationRequest, ToolInputDelta
from pensieve_inference.masks import allowed, unpacked_on_device
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model

TOOLS = [
    Tool(
        name=name,
        description=f"The {name} tool.",
        input_schema={
            "type": "object",
            "properties": {"path": {"type": "string", "maxLength": 30}, "limit": {"type": "integer"}},
            "required": ["path"],
        },
    )
    for name in ("Read", "Write", "Grep")
]


@pytest.fixture(scope="module")
def tool_engine(tmp_path_factory):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    path = build_tiny_model(tmp_path_factory.mktemp("masks"), chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    yield engine
    engine._worker.stop()


def forced(i, choice):
    return GenerationRequest(
        messages=[MessageParam(role="user", content=f"Look at file {i}, please.")],
        max_tokens=60,
        temperature=0.0,
        tools=TOOLS,
        tool_choice=choice,
    )


async def call_text(engine, req):
    events = [e async for e in engine.generate(req)]
    assert isinstance(events[-1], Finished)
    return "".join(e.partial_json for e in events if isinstance(e, ToolInputDelta)), events[-1].output_tokens


def model_batch(engine):
    (batch,) = engine._worker._batches.values()
    return batch


@pytest.mark.parametrize("unpack", [allowed, unpacked_on_device], ids=["numpy", "device"])
def test_unpacked_bits_name_the_allowed_tokens(unpack):
    bits = np.random.default_rng(0).integers(-(2**31), 2**31, size=(3, 5), dtype=np.int64).astype(np.int32)
    # llguidance's layout: token t is allowed when bit t % 32 of word t // 32 is set.
    expected = np.array([[(int(row[t // 32]) >> (t % 32)) & 1 == 1 for t in range(160)] for row in bits])
    assert np.array_equal(np.array(unpack(bits, 160)), expected)
    assert np.array_equal(np.array(unpack(bits, 100)), expected[:, :100])
    assert np.array_equal(np.array(unpack(bits[1], 160)), expected[1])  # one row
    wider = np.array(unpack(bits, 170))  # a model vocabulary past the tokenizer's
    assert np.array_equal(wider[:, :160], expected) and not wider[:, 160:].any()


# READY_WAIT: how long reading a step's inputs may take before the forward pass's launch goes
# first (then the masks are filled after it); 1 s: always beside the launch, 0: never.
@pytest.mark.parametrize("ready_wait", [1.0, 0.0], ids=["beside-launch", "after-launch"])
@pytest.mark.parametrize("choice", [ToolChoiceTool(name="Write"), ToolChoiceAny()], ids=["tool", "any"])
def test_forced_calls_together_say_what_each_says_alone(tool_engine, choice, ready_wait, monkeypatch):
    reqs = [forced(i, choice) for i in range(5)]
    alone = [asyncio.run(call_text(tool_engine, r)) for r in reqs]  # each decodes by itself

    masks = model_batch(tool_engine)._masks
    monkeypatch.setattr(masks, "READY_WAIT", ready_wait)
    masks._launch_first = 0
    fills, filled, read_ahead, beside = masks.fills, masks.filled, masks.read_ahead, masks.beside_launch

    async def together():
        return await asyncio.gather(*(call_text(tool_engine, r) for r in reqs))

    assert asyncio.run(together()) == alone
    assert all(text for text, _ in alone)
    fills, filled, read_ahead = masks.fills - fills, masks.filled - filled, masks.read_ahead - read_ahead
    beside = masks.beside_launch - beside
    # The rows caught up and filled on the helper thread while the forward pass launched, or,
    # with the launch first, after it: the same calls either way.
    assert (beside > fills / 2) if ready_wait else beside == 0, (beside, fills)
    # One fill per step serves the rows decoding together (the first masks are each row's own).
    assert fills > 0 and filled / fills > 2, (fills, filled)
    # The row that fills a step's masks read its newest token from the step's inputs, not from
    # mlx-lm's token buffer, whose read would wait behind the forward pass just queued.
    assert read_ahead >= fills, (read_ahead, fills)
