"""Speculative decoding for the lone sequence: several tokens from one forward pass where the
answer is predictable, with generate_step's contract (yields (token, logprobs) one at a time,
lazily; `prompt_cache` extended in place).

Prompt lookup needs no second model. An agent's answer often copies text it was shown (an Edit's
`old_string`, a file written back with small changes), so the tokens that followed the most
recent earlier occurrence of the context's last few tokens are drafts. The model runs once over
the last token and the drafts, a token is sampled at every position, drafts are accepted while
they equal the sampled token, and the rejected positions are trimmed from the cache. Greedy, the
tokens are generate_step's; sampling, each is drawn from the model's own distribution (a draft
counts only where the model's sample equals it). Where nothing matches, the next step is queued
before this one is read back, as generate_step does, so answers that copy nothing lose little;
after drafts that were all wrong, lookups pause (a pass over several tokens costs more than a
step over one). Measured: docs/performance.md, "Faster than raw decoding".

Under logits processors (a tool call's grammar, above all: an Edit's old_string is copied text),
row i of a pass is processed as the sequence with i drafts appended would be, drafts are first
cut to what the processors admit, and the drafts not taken are taken back from them.

Draft model: mlx-lm's speculative_generate_step, with the draft's own cache (see `draft_steps`).
Worker thread only."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import mlx.core as mx
import numpy as np
from mlx_lm.generate import generation_stream, speculative_generate_step
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

from pensieve_core.errors import ConfigError
from pensieve_model_support import Hub, LoadedModel, load_model, resolve_reference

from .processors import SequenceProcessor, async_eval

if TYPE_CHECKING:
    from .worker import GenerationWorker

# generate_step yields (token id, logprobs); its annotation says mx.array for the id.
Steps = Generator[tuple[Any, mx.array], None, None]

# Drafts verified per forward pass: a copied span is taken up to this many tokens a step.
DRAFT_TOKENS = 8
# The longest and shortest context suffix looked up (longer first: fewer false drafts).
NGRAM = (3, 1)
# After n draft steps in a row that took nothing, 2**n tokens (at most 2**6) decode without lookups.
PAUSE_DOUBLINGS = 6
# Drafts a small draft model proposes per step (mlx-lm's default is 2).
DRAFT_MODEL_TOKENS = 3


@dataclass(frozen=True)
class Speculation:
    """How a lone sequence decodes past plain generate_step: by prompt lookup, or with `draft`."""

    draft: LoadedModel | None = None
    draft_tokens: int = DRAFT_TOKENS


@dataclass
class LookupStats:
    """What a prompt-lookup run did: forward passes after the prefill, drafts tried, accepted."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0


@dataclass
class _Step:
    """One forward pass over the newest token and its drafts, maybe not computed yet."""

    sampled: mx.array
    logprobs: mx.array
    drafts: list[int]
    length: int  # the sequence's tokens through the first one fed


class _Context:
    """The sequence so far (prompt and output) in a growing buffer, for n-gram lookups."""

    def __init__(self, tokens: list[int], room: int) -> None:
        self.buf = np.zeros(len(tokens) + max(room, 16), dtype=np.int64)
        self.buf[: len(tokens)] = tokens
        self.n = len(tokens)

    def extend(self, tokens: list[int]) -> None:
        self.stage(tokens)
        self.n += len(tokens)

    def stage(self, tokens: list[int]) -> None:
        """Write `tokens` after the sequence without extending it (drafts, for `newest`)."""
        if self.n + len(tokens) > len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(len(self.buf) + len(tokens), dtype=np.int64)])
        self.buf[self.n : self.n + len(tokens)] = tokens

    def newest(self, length: int) -> Callable[[int], list[int]]:
        """The last k of the sequence's first `length` tokens (staged ones included), by k."""
        return lambda k: cast(list[int], self.buf[max(0, length - k) : length].tolist())

    def propose(self, count: int, ngram: tuple[int, int] = NGRAM) -> list[int]:
        """Up to `count` tokens that followed the most recent earlier occurrence of the last
        k tokens, for the longest k in `ngram` that occurs."""
        buf, n = self.buf, self.n
        if count <= 0:
            return []
        for k in range(min(ngram[0], n - 1), ngram[1] - 1, -1):
            span = n - k  # starts that leave at least one token after the match
            hit = buf[:span] == buf[span]
            for j in range(1, k):
                hit &= buf[j : span + j] == buf[span + j]
            found = np.flatnonzero(hit)
            if found.size:
                start = int(found[-1]) + k
                drafts: list[int] = buf[start : min(start + count, n)].tolist()
                while len(drafts) < count:  # the copy reached the end: a repeat, going on as it went
                    drafts.append(drafts[start + len(drafts) - n])
                return drafts
        return []


def prompt_lookup_steps(
    context: list[int],
    done: int,
    model: Any,
    *,
    prompt_cache: list[Any],
    max_tokens: int = 256,
    sampler: Any = None,
    prefill_step_size: int = 2048,
    draft_tokens: int = DRAFT_TOKENS,
    ngram: tuple[int, int] = NGRAM,
    processors: Sequence[SequenceProcessor] = (),
    stats: LookupStats | None = None,
) -> Steps:
    """Decode after `context` (the whole sequence so far; `prompt_cache` holds its first `done`
    tokens, and must be trimmable). Lookups search all of `context`, not only the part the cache
    lacks. At a yield the cache may hold tokens not yet yielded (accepted drafts); closing the
    generator trims them, so it then holds what was yielded, the last token perhaps excepted.
    `processors` mask each position as generate_step's logits_processors would (they follow the
    sequence by position, the worker handing them what it emits); closed, they hold no more
    than was yielded."""
    sampler = sampler or (lambda logprobs: mx.argmax(logprobs, axis=-1))
    seq = _Context(context, room=max_tokens)
    ahead = 0  # tokens the cache holds past the last one yielded

    def launch(first: mx.array, drafts: list[int], length: int) -> _Step:
        """A pass over `first` (the sequence's `length`-th token) and `drafts` after it."""
        tokens = mx.concatenate([first, mx.array(drafts, dtype=mx.uint32)]) if drafts else first
        logits = model(tokens[None], cache=prompt_cache)[0]
        if processors:
            logits = processed(logits, tokens, length, first)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        sampled = sampler(logprobs)
        async_eval(sampled, logprobs)
        if stats is not None:
            stats.steps += 1
            stats.drafted += len(drafts)
        return _Step(sampled, logprobs, drafts, length)

    def processed(logits: mx.array, tokens: mx.array, length: int, first: mx.array) -> mx.array:
        """Row i as the sequence with i drafts appended (drafts staged in `seq`) is masked."""
        eager = length == seq.n  # `first` is on the host too: processors take it and the drafts at once

        def queued(k: int) -> list[int]:  # `first` is being computed: read back only if a processor must
            return seq.newest(length - 1)(k - 1) + cast(list[int], first.tolist())

        rows = []
        for i in range(logits.shape[0]):
            row = logits[i : i + 1]
            newest = seq.newest(length + i) if eager else queued
            for p in processors:
                row = p.at(length + i, tokens[: i + 1], row, newest, eager=eager)
            rows.append(row)
        return mx.concatenate(rows) if len(rows) > 1 else rows[0]

    with mx.stream(generation_stream):
        rest = context[done:]
        while len(rest) > 1:
            n = min(prefill_step_size, len(rest) - 1)
            model(mx.array(rest[:n])[None], cache=prompt_cache)
            mx.eval([c.state for c in prompt_cache])
            rest = rest[n:]
            mx.clear_cache()
        y = rest[0]  # the newest token: not in the cache yet
        made = 0
        size = draft_tokens  # drafts to try in a step
        # Draft steps in a row that took nothing; lookups wait till `resume`. The first token
        # comes from a pass over the newest token alone: drafts would lengthen the first token's wait.
        misses, resume = 0, 1
        step: _Step | None = None
        try:
            while made != max_tokens:
                left = max_tokens - made if max_tokens > 0 else sys.maxsize
                drafts = seq.propose(min(size, left - 1), ngram) if made >= resume else []
                if step is None:
                    if drafts and processors:  # a draft a processor forbids would be wasted
                        seq.stage(drafts)
                        for p in processors:
                            drafts = drafts[: p.admits(seq.n, seq.newest(seq.n), drafts)]
                    step = launch(mx.array([y], dtype=mx.uint32), drafts, seq.n)
                k = len(step.drafts)
                queued: _Step | None = None
                if not drafts and left > 1:
                    # Nothing to copy from here: queue the next step before reading this one
                    # back, as generate_step does (a step with drafts waits: it may be cut).
                    queued = launch(step.sampled[k:], [], seq.n + 1)
                tokens = cast(list[int], step.sampled.tolist())  # a 1-D array's: flat
                accepted = 0
                while accepted < k and tokens[accepted] == step.drafts[accepted]:
                    accepted += 1
                trim_prompt_cache(prompt_cache, k - accepted)
                if k > accepted:
                    for p in processors:  # they took every draft in: the rejected ones go
                        p.back_to(step.length + accepted)
                if k:  # as long as the copying went last time, doubling while it holds
                    size = min(draft_tokens, 2 * size) if accepted == k else accepted + 1
                    # Drafts all wrong: a pass over several tokens costs more than one token's
                    # (twice on MLX's CUDA, per token on its CPU), so lookups pause a while.
                    misses = 0 if accepted else misses + 1
                    resume = made + 1 + (1 << min(misses, PAUSE_DOUBLINGS)) if misses else 0
                if stats is not None:
                    stats.accepted += accepted
                out = tokens[: accepted + 1]
                seq.extend(out)
                for i, token in enumerate(out):
                    ahead = accepted - 1 - i + (queued is not None)
                    made += 1  # counted before the yield: a close there has it
                    yield token, step.logprobs[i]
                    if made % 256 == 0:
                        mx.clear_cache()
                ahead = 0
                y, step = out[-1], queued
        finally:
            if ahead > 0:
                trim_prompt_cache(prompt_cache, ahead)
            for p in processors:  # accepted drafts not yet yielded, and a queued step's token
                p.back_to(len(context) + made)


def draft_steps(
    draft: LoadedModel,
    context: list[int],
    done: int,
    model: Any,
    *,
    prompt_cache: list[Any],
    max_tokens: int = 256,
    sampler: Any = None,
    prefill_step_size: int = 2048,
    draft_tokens: int = DRAFT_MODEL_TOKENS,
) -> Steps:
    """mlx-lm's speculative_generate_step after `context` (`prompt_cache` holding its first
    `done` tokens). The draft's cache is its own: the prefix cache keeps the target's only, so
    the draft prefills the whole context at every request (cheap for a small draft, but not
    free on a long warm conversation) and holds its own keys and values meanwhile."""
    draft_cache = make_prompt_cache(draft.model)
    with mx.stream(generation_stream):
        for start in range(0, done, prefill_step_size):
            draft.model(mx.array(context[start : min(start + prefill_step_size, done)])[None], cache=draft_cache)
            mx.eval([c.state for c in draft_cache])
    steps = speculative_generate_step(
        mx.array(context[done:]),
        model,
        draft.model,
        num_draft_tokens=draft_tokens,
        max_tokens=max_tokens,
        sampler=sampler,
        prompt_cache=[*prompt_cache, *draft_cache],
        prefill_step_size=prefill_step_size,
    )
    try:
        for token, logprobs, _ in steps:
            yield token, logprobs
    finally:
        steps.close()  # its own finally trims the rejected drafts


async def load_draft(main: LoadedModel, reference: str, hub: Hub, worker: GenerationWorker, **load: Any) -> Speculation:
    """Load the draft model on `worker` (the main model's MLX thread). It must share the main
    model's vocabulary: its drafts are token ids."""
    ref = resolve_reference(reference)
    draft: LoadedModel = await asyncio.wrap_future(worker.call(lambda: load_model(ref, hub, **load)))
    if len(draft.tokenizer.vocab) != len(main.tokenizer.vocab):
        raise ConfigError(
            f"draft_model {reference!r} has {len(draft.tokenizer.vocab)} tokens in its vocabulary, "
            f"the model it drafts for {len(main.tokenizer.vocab)}: it cannot draft for it"
        )
    return Speculation(draft=draft, draft_tokens=DRAFT_MODEL_TOKENS)
