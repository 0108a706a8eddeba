"""Prompt lookup under logits processors (the tool-call grammar above all): the same greedy
tokens as generate_step with the same processors, for forced and chosen calls, with drafts the
grammar rejects, and several tokens a pass where the call copies the prompt (an Edit's
old_string)."""

import json
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache

from pensieve_claude_types import MessageParam, Tool, ToolChoiceAny, ToolChoiceAuto, ToolChoiceTool
from pensieve_core import GenerationRequest
from pensieve_inference import PromptRenderer
from pensieve_inference.constrained import make_tool_constraint
from pensieve_inference.processors import Shifted
from pensieve_inference.prompt import function_spec
from pensieve_inference.speculative import LookupStats, Speculation, prompt_lookup_steps
from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model

LINE = "total = sum(price * count for price, count in basket.items()) + shipping_cost(order, region)"
FILE = f"import math\n\ndef checkout(basket, order, region):\n    {LINE}\n    return round(total, 2)\n"
EDIT = {
    "type": "object",
    "properties": {"file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
    "required": ["file_path", "old_string", "new_string"],
    "additionalProperties": False,
}
# old_string at most 40 characters: a copy of the whole line is cut short by the grammar.
SHORT = {**EDIT, "properties": {**EDIT["properties"], "old_string": {"type": "string", "maxLength": 40}}}
READ = {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}


def call_text(old: str) -> str:
    arguments = {"file_path": "shop.py", "old_string": old, "new_string": old.replace("shipping", "delivery")}
    return "<tool_call>\n" + json.dumps({"name": "Edit", "arguments": arguments}) + "\n</tool_call>"


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tools"), chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True)
    return load_model(resolve_reference(str(path)), HuggingFaceHub())


class Scripted:
    """The random model, pushed to say `script` from `start` tokens into the sequence (by
    position, read from its cache): where the grammar forbids the scripted token, the random
    model's own logits choose among the allowed ones, so the answer depends on what was fed."""

    def __init__(self, model, script, start, push=1e3):
        self.model, self.script, self.start, self.push = model, script, start, push
        self.calls = 0

    def __getattr__(self, name):  # layers, make_cache: the model's
        return getattr(self.model, name)

    def __call__(self, inputs, cache):
        self.calls += 1
        offset, n = cache[0].offset, inputs.shape[1]
        logits = self.model(inputs, cache=cache)
        boost = np.zeros((n, logits.shape[-1]), dtype=np.float32)
        for j in range(n):
            at = offset + j + 1 - self.start
            if 0 <= at < len(self.script):
                boost[j, self.script[at]] = self.push
        return logits + mx.array(boost)[None]


@dataclass
class Case:
    tools: list
    choice: object
    say: str  # what the script says (the prompt copy inside it)


CASES = {
    "forced tool": Case([Tool(name="Edit", input_schema=EDIT)], ToolChoiceTool(name="Edit"), call_text(LINE)),
    "any": Case(
        [Tool(name="Read", input_schema=READ), Tool(name="Edit", input_schema=EDIT)], ToolChoiceAny(), call_text(LINE)
    ),
    "auto": Case([Tool(name="Edit", input_schema=EDIT)], ToolChoiceAuto(), "I will rename it.\n" + call_text(LINE)),
    # The script copies the whole line; the grammar stops old_string at 40 characters.
    "grammar cuts the copy": Case(
        [Tool(name="Edit", input_schema=SHORT)], ToolChoiceTool(name="Edit"), call_text(LINE)
    ),
}


def setup(loaded, case):
    renderer = PromptRenderer(loaded.tokenizer, "tools")
    request = GenerationRequest(
        messages=[MessageParam(role="user", content=f"shop.py:\n{FILE}\nRename shipping_cost to delivery_cost.")],
        tools=case.tools,
        tool_choice=case.choice,
        max_tokens=300,
        temperature=0.0,
    )
    prompt = renderer.prompt(request).tokens
    tokenizer = loaded.tokenizer
    script = tokenizer.encode(case.say, add_special_tokens=False) + sorted(tokenizer.eos_token_ids)[:1]
    forced = not isinstance(case.choice, ToolChoiceAuto)

    def constraint():
        specs = [function_spec(t) for t in case.tools]
        made = make_tool_constraint(
            tokenizer, renderer.dialect, specs, forced=forced, single=False, prompt_tokens=len(prompt)
        )
        assert made is not None
        return made

    return prompt, Scripted(loaded.model, script, len(prompt)), constraint


def taken(steps, processor):
    """The tokens, each handed to the processor as the worker hands what it emits."""
    out = []
    for token, _ in steps:
        out.append(int(token))
        processor.seen.append(out[-1])
    return out


def plain(model, prompt, max_tokens, processor):
    steps = generate_step(
        mx.array(prompt),
        model,
        max_tokens=max_tokens,
        prompt_cache=make_prompt_cache(model),
        logits_processors=[Shifted(processor, 0)],
    )
    return taken(steps, processor)


def lookup(model, prompt, max_tokens, processor, stats=None):
    cache = make_prompt_cache(model)
    steps = prompt_lookup_steps(
        prompt, 0, model, prompt_cache=cache, max_tokens=max_tokens, processors=[processor], stats=stats
    )
    return taken(steps, processor)


@pytest.mark.parametrize("max_tokens", [1, 2, 9, 33, 120])
@pytest.mark.parametrize("name", list(CASES))
def test_constrained_prompt_lookup_gives_generate_steps_greedy_tokens(tool_model, name, max_tokens):
    prompt, model, constraint = setup(tool_model, CASES[name])
    assert lookup(model, prompt, max_tokens, constraint()) == plain(model, prompt, max_tokens, constraint())


@pytest.mark.parametrize("name", list(CASES))
def test_a_call_that_copies_the_prompt_takes_several_tokens_a_pass(tool_model, name):
    case = CASES[name]
    prompt, model, constraint = setup(tool_model, case)
    stats = LookupStats()
    tokens = lookup(model, prompt, len(model.script), constraint(), stats)
    text = tool_model.tokenizer.decode(tokens)
    call = json.loads(text[text.index("<tool_call>") + 11 : text.index("</tool_call>")])
    if name == "grammar cuts the copy":  # cut where the schema says, then the grammar's own way
        assert call["arguments"]["old_string"].startswith(LINE[:30])
        assert len(call["arguments"]["old_string"]) <= 40
    else:
        assert text == case.say + "<|im_end|>"  # the script, let through whole
    # Speculation ran under the constraint: drafts were taken, fewer passes than tokens.
    assert stats.accepted >= 12 and stats.steps < len(tokens) - 12, stats


def test_solo_steps_speculate_under_the_tool_constraint(tool_model):
    """The lone sequence's loop picks prompt lookup although the job has a processor."""
    from pensieve_inference.solo import solo_steps

    prompt, model, constraint = setup(tool_model, CASES["forced tool"])

    @dataclass
    class Job:  # what solo_steps reads of a GenerationJob
        constraint: object
        speculation: object = Speculation()
        thinking_budget: object = None
        prefix_cache: object = None

    @dataclass
    class Loaded:
        model: object

    job = Job(constraint())
    cache = make_prompt_cache(model)
    n = len(model.script)
    steps = solo_steps(Loaded(model), job, list(prompt), [], 0, cache, max_tokens=n, sampler=None, prefill_step=2048)
    tokens = taken(steps, job.constraint)
    passes = model.calls
    assert tokens == plain(model, prompt, n, constraint())
    assert passes < len(tokens) * 0.75, (passes, len(tokens))


def test_a_rewound_constraint_masks_as_one_that_never_saw_the_drafts(tool_model):
    """Rejected drafts taken back (llguidance rollback, into a call that had closed and out
    of one that had opened) leave the processor as a fresh one fed only the kept tokens."""
    case = CASES["auto"]
    prompt, _, constraint = setup(tool_model, case)
    said = tool_model.tokenizer.encode(case.say, add_special_tokens=False)
    vocab = tool_model.model.model.embed_tokens.weight.shape[0]
    logits = mx.zeros((1, vocab))
    opened = next(i for i in range(len(said)) if tool_model.tokenizer.decode(said[: i + 1]).endswith("<tool_call>"))
    for keep in (opened - 2, opened, opened + 1, opened + 6, len(said) - 3, len(said) - 1):
        rewound = constraint()
        rewound.at(len(prompt) + len(said), mx.array(said), logits, lambda k: said[-k:], eager=True)
        rewound.back_to(len(prompt) + keep)
        fresh = constraint()
        kept = said[:keep]
        fresh.at(len(prompt) + keep, mx.array(kept), logits, lambda k, kept=kept: kept[-k:], eager=True)
        assert (rewound.mode, rewound.generated) == (fresh.mode, fresh.generated), keep
        after = said[keep : keep + 2]
        assert rewound.valid_prefix(after) == fresh.valid_prefix(after), keep
        m1 = rewound.at(len(prompt) + keep, mx.array(kept), logits)
        m2 = fresh.at(len(prompt) + keep, mx.array(kept), logits)
        assert mx.array_equal(m1, m2), keep
