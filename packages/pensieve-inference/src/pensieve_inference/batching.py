"""Continuous batching for one loaded model, on mlx-lm's BatchGenerator: requests join and
leave between decode steps, so concurrent requests share each step's forward pass.

A sequence decoding alone leaves the batch for mlx-lm's plain generate_step, which skips the
batch's padding masks and bookkeeping (about 1.7x faster per token on an H100); when another
request arrives it goes back into the batch with its cache. Worker thread only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import mlx.core as mx
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.models.cache import trim_prompt_cache
from mlx_lm.sample_utils import make_sampler

from pensieve_claude_types import StopReason
from pensieve_core import Failed, Finished, Started
from pensieve_core.errors import PensieveError
from pensieve_model_support import LoadedModel

from .processors import Shifted
from .jobs import GenerationJob
from .stops import StopSequenceMatcher

log = structlog.get_logger("pensieve.inference")

# Default prefill chunk: long prompts are run this many tokens at a time, decode steps of
# the other sequences in between, so one long prompt does not stall everyone's stream.
PREFILL_STEP = 2048
# Default cap on sequences decoded together per model; more wait inside the batch queue.
MAX_SEQUENCES = 16


@dataclass
class _Sequence:
    """A job inside the batch and what its text needs on the way out."""

    job: GenerationJob
    detokenizer: Any
    stops: StopSequenceMatcher
    # Prompt lengths still to be reached where the cache is kept (message boundaries).
    boundaries: list[int] = field(default_factory=list)
    output_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    # Prompt and generated tokens, while decoding alone (outside the batch).
    fed: list[int] = field(default_factory=list)


@dataclass
class _Solo:
    """The one sequence decoding alone: generate_step's iterator and the cache it fills
    (which holds every token yielded so far)."""

    uid: int
    steps: Any
    cache: list[Any]


def _processors(job: GenerationJob) -> list[Any]:
    return [p for p in (job.thinking_budget, job.constraint) if p is not None]


def _split(rest: list[int], reused: int, boundaries: tuple[int, ...]) -> list[list[int]]:
    """The tokens still to run, cut at the message boundaries that lie ahead."""
    segments, start = [], reused
    for end in boundaries:
        if start < end < reused + len(rest):
            segments.append(rest[start - reused : end - reused])
            start = end
    segments.append(rest[start - reused :])
    return segments


class ModelBatch:
    def __init__(self, loaded: LoadedModel, *, max_sequences: int = MAX_SEQUENCES, prefill_step: int = PREFILL_STEP) -> None:
        self.loaded = loaded
        self._max_sequences = max_sequences
        self._prefill_step = prefill_step
        self._generator = self._new_generator()
        self._running: dict[int, _Sequence] = {}
        self._solo: _Solo | None = None
        self._eos = set(loaded.tokenizer.eos_token_ids)

    def _new_generator(self) -> BatchGenerator:
        eos = sorted(self.loaded.tokenizer.eos_token_ids)
        return BatchGenerator(
            self.loaded.model,
            stop_tokens=[[t] for t in eos],
            completion_batch_size=self._max_sequences,
            prefill_batch_size=min(self._max_sequences, 8),
            prefill_step_size=self._prefill_step,
        )

    def __len__(self) -> int:
        return len(self._running)

    def admit(self, job: GenerationJob) -> None:
        if job.cancelled.is_set():
            return
        self._drop_cancelled()  # a retry of an abandoned request finds its prefill
        self._rejoin()  # company: the lone sequence goes back into the batch
        cache, rest = None, job.prompt
        if job.prefix_cache is not None:
            cache, rest = job.prefix_cache.take(job.cache_key, self.loaded.model, job.prompt)
        reused = len(job.prompt) - len(rest)
        job.emit(Started(
            prompt_tokens=len(job.prompt),
            cache_read_tokens=reused,
            cache_creation_tokens=len(rest) if job.prefix_cache is not None else 0,
        ))
        segments = _split(rest, reused, job.boundaries)
        (uid,) = self._generator.insert_segments(
            [segments],
            max_tokens=[job.max_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[job.prompt[:reused]],
            samplers=[make_sampler(**job.sampler_args)],
            logits_processors=[_processors(job)],
        )
        ends = [b for b in job.boundaries if reused < b < len(job.prompt)]
        self._running[uid] = _Sequence(
            job=job,
            detokenizer=self.loaded.tokenizer.detokenizer,
            stops=StopSequenceMatcher(job.stop_sequences),
            boundaries=ends,
            fed=list(job.prompt),
        )

    def step(self) -> None:
        """One decode step for every generating sequence (and a prefill chunk for new ones)."""
        self._drop_cancelled()
        if not self._running:
            return
        try:
            if self._solo is not None:
                self._solo_step()
                return
            prompt_responses, responses = self._generator.next()
        except Exception as exc:  # noqa: BLE001 — every sequence in the batch is lost; say so
            self._fail_all(exc)
            return
        for r in prompt_responses:
            self._keep_boundary(r)
        for r in responses:
            seq = self._running.get(r.uid)
            if seq is not None:
                self._on_token(r.uid, seq, r)
        alone = [r.uid for r in prompt_responses if r.end_of_prompt]
        if len(alone) == 1 and len(self._running) == 1 and alone[0] in self._running:
            self._go_solo(alone[0])

    def _go_solo(self, uid: int) -> None:
        """Its prompt is in, nobody else is here: decode with generate_step. The batch's first
        sampled token is dropped and recomputed from the last prompt token (one extra step)."""
        seq = self._running[uid]
        (cache, tokens), = self._generator.remove([uid], return_prompt_caches=True).values()
        trim_prompt_cache(cache, 1)
        seq.fed = list(tokens)
        steps = generate_step(
            mx.array(seq.fed[-1:]), self.loaded.model, max_tokens=seq.job.max_tokens - seq.output_tokens,
            sampler=make_sampler(**seq.job.sampler_args), prompt_cache=cache,
            # generate_step's token history starts at its first input, the last one fed.
            logits_processors=[Shifted(p, len(seq.fed) - 1) for p in _processors(seq.job)] or None,
        )
        self._solo = _Solo(uid=uid, steps=steps, cache=cache)

    def _solo_step(self) -> None:
        solo = self._solo
        assert solo is not None
        seq = self._running[solo.uid]
        token = next(solo.steps, None)
        if token is None:  # generate_step stops at its max_tokens
            self._end_solo(solo, seq, "length")
            return
        token = token[0]
        seq.fed.append(token)
        finish = "stop" if token in self._eos else None
        if finish is None and seq.output_tokens + 1 >= seq.job.max_tokens:
            finish = "length"
        if self._take_token(seq, token, finish):
            finish = "stop"
        if finish is not None:
            self._end_solo(solo, seq, finish)

    def _end_solo(self, solo: _Solo, seq: _Sequence, finish: str | None) -> None:
        """Close the iterator (on this thread), keep the cache, report if it finished."""
        solo.steps.close()
        self._solo = None
        del self._running[solo.uid]
        if seq.job.prefix_cache is not None:
            seq.job.prefix_cache.put(seq.job.cache_key, seq.fed, solo.cache)
        if finish is not None:
            self._finish(seq, finish)

    def _rejoin(self) -> None:
        """The lone sequence goes back into the batch: its cache minus the last token, which
        the batch feeds again to sample the next one."""
        solo = self._solo
        if solo is None:
            return
        seq = self._running.pop(solo.uid)
        solo.steps.close()
        self._solo = None
        # The cache holds every fed token once generate_step has run, all but the last before.
        trim_prompt_cache(solo.cache, solo.cache[0].offset - (len(seq.fed) - 1))
        left = seq.job.max_tokens - seq.output_tokens
        (uid,) = self._generator.insert(
            [seq.fed[-1:]], max_tokens=[left], caches=[solo.cache], all_tokens=[seq.fed[:-1]],
            samplers=[make_sampler(**seq.job.sampler_args)],
            logits_processors=[_processors(seq.job)],
        )
        self._running[uid] = seq

    def _drop_cancelled(self) -> None:
        solo = self._solo
        if solo is not None and self._running[solo.uid].job.cancelled.is_set():
            self._end_solo(solo, self._running[solo.uid], None)
        gone = [uid for uid, seq in self._running.items() if seq.job.cancelled.is_set()]
        if not gone:
            return
        # Keep what the abandoned requests prefilled: a client that retries starts there.
        kept = self._generator.remove(gone, return_prompt_caches=True)
        for uid in gone:
            seq = self._running.pop(uid)
            if seq.job.prefix_cache is not None and uid in kept:
                cache, tokens = kept[uid]
                seq.job.prefix_cache.put(seq.job.cache_key, list(tokens), cache)

    def _keep_boundary(self, r: Any) -> None:
        seq = self._running.get(r.uid)
        if seq is None or not r.end_of_segment or r.end_of_prompt or not seq.boundaries:
            return
        at = seq.boundaries.pop(0)
        if seq.job.prefix_cache is None:
            return
        for cache, tokens in self._generator.extract_cache([r.uid]).values():
            persist = at == seq.job.system_end
            seq.job.prefix_cache.put(seq.job.cache_key, list(tokens), cache, persist=persist)

    def _take_token(self, seq: _Sequence, token: int, finish: str | None) -> bool:
        """One generated token, from the batch or the solo loop: its text goes out; True when
        the sequence ends here early (a stop sequence, the one allowed tool call)."""
        job = seq.job
        seq.output_tokens += 1
        for processor in _processors(job):
            processor.seen.append(token)
        if finish != "stop":  # an end-of-turn token has no text
            seq.detokenizer.add_token(token)
        if finish is not None:
            seq.detokenizer.finalize()
        job.emit_text(seq.stops.feed(job.answer_text(seq.detokenizer.last_segment)))
        calls = job.tool_calls
        called_once = calls is not None and calls.single and calls.calls > 0
        return finish is None and (seq.stops.matched is not None or called_once)

    def _on_token(self, uid: int, seq: _Sequence, r: Any) -> None:
        early = self._take_token(seq, r.token, r.finish_reason)
        if r.finish_reason is None and not early:
            return
        job = seq.job
        if early:
            self._generator.remove([uid], return_prompt_caches=False)  # leave the batch now
        elif job.prefix_cache is not None and r.prompt_cache is not None:
            job.prefix_cache.put(job.cache_key, list(r.all_tokens), r.prompt_cache)
        del self._running[uid]
        self._finish(seq, "length" if r.finish_reason == "length" else "stop")

    def _finish(self, seq: _Sequence, finish: str) -> None:
        job, stops = seq.job, seq.stops
        if stops.matched is None:
            job.emit_text(stops.feed(job.finish_thinking()) + stops.flush())
        if job.tool_calls is not None:
            for event in job.tool_calls.finish():
                job.emit(event)
        called = job.tool_calls is not None and job.tool_calls.calls > 0
        sequence = None
        reason: StopReason
        if stops.matched is not None:
            reason, sequence = "stop_sequence", stops.matched
        elif finish == "length":
            reason = job.exhausted_reason
        else:
            reason = "tool_use" if called else "end_turn"
        log.info(
            "generation",
            request_id=job.request_id,
            prompt_tokens=len(job.prompt),
            output_tokens=seq.output_tokens,
            stop_reason=reason,
            seconds=round(time.perf_counter() - seq.started, 3),
        )
        thinking_tokens = job.thinking_budget.spent if job.thinking_budget is not None else None
        job.emit(Finished(
            stop_reason=reason, output_tokens=seq.output_tokens, stop_sequence=sequence, thinking_tokens=thinking_tokens,
        ))

    def fail_one(self, job: GenerationJob, exc: Exception) -> None:
        job.emit(self._failure(exc, [job.request_id]))

    @staticmethod
    def _failure(exc: Exception, request_ids: list[str]) -> Failed:
        if isinstance(exc, PensieveError):
            return Failed(error_type=exc.error_type, message=exc.message)
        log.error("generation_failed", requests=request_ids, error=repr(exc), exc_info=exc)
        return Failed(error_type="api_error", message=f"generation failed: {exc}")

    def _fail_all(self, exc: Exception) -> None:
        failed = self._failure(exc, [s.job.request_id for s in self._running.values()])
        if self._solo is not None:
            uid = self._solo.uid
            self._solo.steps.close()
            self._solo = None
            self._running[uid].job.emit(failed)
            del self._running[uid]
        try:
            self._generator.remove(list(self._running))
        except Exception:  # noqa: BLE001 — a broken batch is dropped whole below
            self._generator = self._new_generator()
        for seq in self._running.values():
            seq.job.emit(failed)
        self._running.clear()

    def close(self) -> None:
        if self._solo is not None:
            self._solo.steps.close()
            self._solo = None
        for seq in self._running.values():
            seq.job.cancelled.set()
        self._running.clear()
        self._generator.close()
