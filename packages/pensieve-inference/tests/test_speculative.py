"""Speculative decoding of the lone sequence: prompt lookup (drafts copied from the context)
and a draft model give exactly plain greedy decoding's tokens, take several tokens per forward
pass when the answer copies the prompt, and leave a cache the batch can go on from."""

import asyncio
from dataclasses import dataclass, field

import mlx.core as mx
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, Settings, TextDelta
from pensieve_core.errors import ConfigError
from pensieve_inference.speculative import (
    DRAFT_TOKENS,
    LookupStats,
    Speculation,
    _Context,
    draft_steps,
    prompt_lookup_steps,
)
from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference
from pensieve_model_support.testing import build_tiny_model

# What the crafted model answers; a copying answer when the prompt shows it.
REPLY = "The quick brown fox jumps over a lazy dog near our old barn while seven purple geese watch"


@pytest.fixture(scope="module")
def copying_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("copying"), reply=REPLY)


def loaded_from(path):
    return load_model(resolve_reference(str(path)), HuggingFaceHub())


@pytest.fixture(scope="module")
def random_model(tiny_model_dir):
    return loaded_from(tiny_model_dir)


@pytest.fixture(scope="module")
def copying_model(copying_dir):
    return loaded_from(copying_dir)


class Counted:
    """The model, counting its forward passes."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


def plain(model, prompt, max_tokens):
    steps = generate_step(mx.array(prompt), model, max_tokens=max_tokens, prompt_cache=make_prompt_cache(model))
    return [int(t) for t, _ in steps]


def lookup(model, prompt, max_tokens, done=0, cache=None, **kwargs):
    cache = cache if cache is not None else make_prompt_cache(model)
    steps = prompt_lookup_steps(prompt, done, model, prompt_cache=cache, max_tokens=max_tokens, **kwargs)
    return [int(t) for t, _ in steps]


def prompts(tokenizer):
    copy = tokenizer.encode(f"Quote this line back: {REPLY}\nThe line again:\n")
    loop = tokenizer.encode("one two three one two three one two three one two")
    other = tokenizer.encode("Hello there, what is the weather like today?")
    return {"copy": copy, "loop": loop, "other": other}


@pytest.mark.parametrize("max_tokens", [1, 2, DRAFT_TOKENS, DRAFT_TOKENS + 1, 40])
@pytest.mark.parametrize("which", ["random", "copying"])
def test_prompt_lookup_gives_generate_steps_greedy_tokens(request, which, max_tokens):
    loaded = request.getfixturevalue(f"{which}_model")
    for name, prompt in prompts(loaded.tokenizer).items():
        assert lookup(loaded.model, prompt, max_tokens) == plain(loaded.model, prompt, max_tokens), name


def test_prompt_lookup_continues_a_cache_that_holds_part_of_the_prompt(copying_model):
    model, prompt = copying_model.model, prompts(copying_model.tokenizer)["copy"]
    cache = make_prompt_cache(model)
    model(mx.array(prompt[:10])[None], cache=cache)
    assert lookup(model, prompt, 30, done=10, cache=cache) == plain(model, prompt, 30)


def test_a_copying_answer_takes_several_tokens_per_forward_pass(copying_model):
    prompt = prompts(copying_model.tokenizer)["copy"]
    counted, stats, cache = Counted(copying_model.model), LookupStats(), make_prompt_cache(copying_model.model)
    tokens = lookup(counted, prompt, 30, cache=cache, stats=stats)
    assert tokens == plain(copying_model.model, prompt, 30)
    # Every rejected draft was cut (this model reads only the newest token: the count shows it).
    assert cache[0].offset == len(prompt) + len(tokens) - 1
    reply_tokens = len(copying_model.tokenizer.encode(REPLY, add_special_tokens=False))
    assert reply_tokens > 12
    # Plain decoding takes a pass per token; the copy goes up to DRAFT_TOKENS + 1 a pass.
    assert counted.calls < len(tokens) / 2, counted.calls
    assert stats.accepted >= reply_tokens - 4 and stats.steps == counted.calls - 1  # and the prefill


def test_the_first_token_comes_from_a_pass_without_drafts(copying_model):
    # A pass over several tokens costs about twice one token's on MLX's CUDA (per token on its
    # CPU): drafts in the first pass would be paid for in the time to the first token.
    prompt = prompts(copying_model.tokenizer)["copy"]  # a prompt whose lookups find drafts at once
    stats = LookupStats()
    steps = prompt_lookup_steps(prompt, 0, copying_model.model, prompt_cache=make_prompt_cache(copying_model.model),
                                max_tokens=30, stats=stats)  # fmt: skip
    next(steps)
    assert stats.steps >= 1 and stats.drafted == 0
    rest = [int(t) for t, _ in steps]
    assert stats.drafted > 0 and stats.accepted > 0 and len(rest) == 29  # and lookups go on after it


def test_an_answer_that_copies_nothing_drafts_nothing(random_model):
    prompt = prompts(random_model.tokenizer)["other"]
    stats = LookupStats()
    lookup(random_model.model, prompt, 40, stats=stats)
    assert stats.accepted <= stats.drafted < 40


@pytest.mark.parametrize("stop_after", [1, 3, 5, 9, 14, 19, 24])
def test_a_closed_run_leaves_a_cache_that_decoding_goes_on_from(copying_model, stop_after):
    """As the batch takes the lone sequence back: close the generator mid-copy (accepted drafts
    not yet yielded), trim as cut_for_batch does, and go on with generate_step."""
    from pensieve_inference.solo import Solo, cut_for_batch

    model, prompt = copying_model.model, prompts(copying_model.tokenizer)["copy"]
    whole = plain(model, prompt, 30)
    cache = make_prompt_cache(model)
    steps = prompt_lookup_steps(prompt, 0, model, prompt_cache=cache, max_tokens=30)
    fed = list(prompt)
    for token, _ in steps:
        fed.append(int(token))
        if len(fed) - len(prompt) == stop_after:
            break
    steps.close()
    assert cache[0].offset <= len(fed)
    keep = cut_for_batch(Solo(0, steps, cache), len(fed))
    rest = generate_step(mx.array(fed[keep:]), model, max_tokens=30 - stop_after, prompt_cache=cache)
    assert fed[len(prompt) :] + [int(t) for t, _ in rest] == whole


def test_lookup_copies_what_followed_the_most_recent_occurrence():
    context = _Context([1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3], room=4)
    assert context.propose(2) == [4, 5]  # the longest suffix that recurs: [1, 2, 3]
    assert context.propose(2, ngram=(2, 1)) == [7, 8]  # [2, 3] last came before 7, 8
    assert _Context([1, 2, 3], room=4).propose(4) == []
    # A copy that reaches the end is a repeat: it goes on as it went.
    assert context.propose(7, ngram=(2, 1)) == [7, 8, 1, 2, 3, 7, 8]
    assert _Context([5, 1, 2, 1, 2], room=4).propose(5) == [1, 2, 1, 2, 1]


def test_draft_model_steps_give_generate_steps_greedy_tokens(tmp_path, random_model):
    draft = loaded_from(build_tiny_model(tmp_path / "draft", seed=1))
    for drafter in (draft, random_model):  # a draft that agrees rarely, one that always does
        for prompt in prompts(random_model.tokenizer).values():
            for max_tokens in (1, 2, 17):
                cache = make_prompt_cache(random_model.model)
                random_model.model(mx.array(prompt[:4])[None], cache=cache)
                steps = draft_steps(drafter, prompt, 4, random_model.model, prompt_cache=cache, max_tokens=max_tokens)
                assert [int(t) for t, _ in steps] == plain(random_model.model, prompt, max_tokens)


def request(text, max_tokens=40):
    return GenerationRequest(messages=[MessageParam(role="user", content=text)], max_tokens=max_tokens, temperature=0.0)


def answer(engine, req):
    async def run():
        return [e async for e in engine.generate(req)]

    events = asyncio.run(run())
    assert isinstance(events[-1], Finished)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_the_engine_answers_the_same_with_speculation_on_and_off(copying_dir):
    from pensieve_inference import EngineOptions, MLXEngine

    engines = {
        mode: MLXEngine.load_sync(
            resolve_reference(str(copying_dir)), HuggingFaceHub(), EngineOptions(speculative=mode)
        )
        for mode in ("off", "prompt_lookup")
    }
    try:
        assert engines["off"].speculation is None and engines["prompt_lookup"].speculation == Speculation()
        for text in (f"Quote this: {REPLY}", "Say anything at all."):
            texts = {mode: answer(engine, request(text)) for mode, engine in engines.items()}
            assert texts["off"] == texts["prompt_lookup"]
        assert texts["off"].strip() == REPLY
    finally:
        for engine in engines.values():
            engine.worker.stop()


@dataclass(kw_only=True)
class _Collected:
    out: list = field(default_factory=list)

    def emit(self, event):  # the events themselves, without an event loop
        self.out.append(event)


@pytest.mark.parametrize("solo_steps", [0, 1, 3, 6])
def test_a_speculating_sequence_rejoins_the_batch_with_its_alone_text(copying_dir, copying_model, solo_steps):
    from pensieve_inference import PromptRenderer
    from pensieve_inference.batching import ModelBatch
    from pensieve_inference.jobs import GenerationJob

    @dataclass(kw_only=True)
    class Collected(_Collected, GenerationJob):
        pass

    renderer = PromptRenderer(copying_model.tokenizer, "copying")

    def job(text):
        return Collected(
            prompt=renderer.prompt(request(text)).tokens,
            max_tokens=40,
            sampler_args={"temp": 0.0, "top_p": 0.0, "top_k": 0},
            stop_sequences=None,
            request_id=text,
            loop=None,
            events=None,
            speculation=Speculation(),
        )

    def text_of(j):
        return "".join(e.text for e in j.out if isinstance(e, TextDelta))

    def drain(batch):
        while len(batch):
            batch.step()

    texts = (f"Quote this: {REPLY}", f"And this one: {REPLY}")
    batch = ModelBatch(copying_model)
    alone = []
    for text in texts:
        j = job(text)
        batch.admit(j)
        drain(batch)
        alone.append(text_of(j))
    assert alone[0].strip() == REPLY

    first, second = job(texts[0]), job(texts[1])
    batch.admit(first)
    while batch._solo is None:
        batch.step()
    for _ in range(solo_steps):
        batch.step()
    batch.admit(second)
    assert batch._solo is None  # back in the batch
    drain(batch)
    assert [text_of(first), text_of(second)] == alone


def test_draft_speculation_needs_a_draft_model():
    with pytest.raises(ConfigError, match="draft_model"):
        Settings(speculative="draft")
    from pensieve_inference import EngineOptions

    options = EngineOptions.of(Settings(speculative="draft", draft_model="smollm2-135m"))
    assert (options.speculative, options.draft_model) == ("draft", "smollm2-135m")
    assert options.speculation() is None  # until startup has loaded the draft


def test_auto_speculation_is_off_on_a_cpu_and_on_on_a_gpu(monkeypatch):
    from pensieve_inference import EngineOptions

    auto = EngineOptions.of(Settings())
    assert auto.speculative == "auto"
    assert auto.speculation() is None  # this machine's MLX runs on the CPU
    monkeypatch.setattr(mx, "default_device", lambda: mx.gpu)
    assert auto.speculation() is not None
    assert EngineOptions.of(Settings(kv_bits=8)).speculation() is None  # quantized keys decode plainly
