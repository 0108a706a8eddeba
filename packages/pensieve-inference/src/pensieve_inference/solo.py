"""The one sequence decoding alone, on mlx-lm's plain generate_step, which skips the batch's
padding masks and bookkeeping (about 1.7x faster per token on an H100), or speculatively
(speculative.py) where the job allows it. Worker thread only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

from pensieve_model_support import LoadedModel

from .jobs import GenerationJob
from .output import processors_of
from .prefill_lane import snapshot
from .processors import SequenceProcessor, Shifted
from .speculative import Steps as Steps  # the batch's name for a solo's iterator
from .speculative import draft_steps, prompt_lookup_steps


@dataclass
class Solo:
    """generate_step's iterator and the cache it fills (which holds every token yielded so far;
    before the first step, the prompt only as far as it was when the sequence went solo)."""

    uid: int
    steps: Steps
    cache: list[Any]


def solo_steps(
    loaded: LoadedModel,
    job: GenerationJob,
    fed: list[int],
    boundaries: list[int],
    done: int,
    cache: list[Any],
    *,
    max_tokens: int,
    sampler: Any,
    prefill_step: int,
) -> Steps:
    """generate_step from `done` into `fed`, the cache kept at each message boundary on the
    way (`boundaries` emptied as they are passed, as the batch keeps them); run lazily, by the
    first step. Speculative when the job says so, unless the cache cannot be trimmed back past
    rejected drafts; under logits processors, by prompt lookup only (they follow drafts there)."""
    while boundaries:
        at = boundaries.pop(0)
        loaded.model(mx.array(fed[done:at])[None], cache=cache)
        mx.eval([c.state for c in cache])
        done = at
        if job.prefix_cache is not None:
            job.prefix_cache.put(job.cache_key, fed[:at], snapshot(cache), persist=at == job.system_end)
    spec = job.speculation
    processors = processors_of(job)
    follows = all(isinstance(p, SequenceProcessor) for p in processors) and (spec is None or spec.draft is None)
    if spec is not None and (not processors or follows) and can_trim_prompt_cache(cache):
        how: dict[str, Any] = {
            "prompt_cache": cache,
            "max_tokens": max_tokens,
            "sampler": sampler,
            "prefill_step_size": prefill_step,
            "draft_tokens": spec.draft_tokens,
        }
        if spec.draft is not None:
            yield from draft_steps(spec.draft, fed, done, loaded.model, **how)
        else:
            yield from prompt_lookup_steps(fed, done, loaded.model, processors=processors, **how)
        return
    yield from generate_step(
        mx.array(fed[done:]),
        loaded.model,
        max_tokens=max_tokens,
        sampler=sampler,
        prompt_cache=cache,
        prefill_step_size=prefill_step,
        # generate_step's token history starts at its first input, `done` into the sequence.
        logits_processors=[Shifted(p, done) for p in processors] or None,
    )


def cut_for_batch(solo: Solo, fed: int, feed: int = 1) -> int:
    """Trim the cache for the batch to go on from (it feeds at least the last token again to
    sample the next one, up to `feed` tokens where the cache can be cut); return how many tokens
    the cache keeps. A speculative solo's cache may hold accepted drafts not yet yielded: they
    are cut too."""
    offset = solo.cache[0].offset
    keep = min(offset, fed - 1)
    if feed > 1 and keep > 1 and can_trim_prompt_cache(solo.cache):
        keep = max(1, min(keep, fed - feed))
    trim_prompt_cache(solo.cache, offset - keep)
    return int(keep)
