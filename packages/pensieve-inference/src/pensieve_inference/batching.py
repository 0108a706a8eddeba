"""Continuous batching for one loaded model, on mlx-lm's BatchGenerator: requests join and
leave between decode steps, so concurrent requests share each step's forward pass.

A sequence alone decodes by itself (solo.py); when another request arrives it goes back into
the batch with its cache. With quantized keys and values (kv_quant.py) nothing is batched: one
request decodes alone (after the lane, if its prompt is long), the others wait their turn in
order of arrival. Worker thread only."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import msgspec
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

from pensieve_core import Started
from pensieve_model_support import LoadedModel

from . import attention_masks, batch_recovery
from .failures import StepFailures, failure_event
from .jobs import GenerationJob
from .kv_quant import KVQuantization, quantized
from .lockstep import Lockstep
from .masks import BatchMasks
from .output import SequenceOutput, processors_of
from .prefill_lane import LANE_MIN_TOKENS, Prefill, PrefillLane, snapshot
from .sampling import SharedSamplers
from .solo import Solo, Steps, cut_for_batch, solo_steps
from .stops import StopSequenceMatcher

# Default prefill chunk: long prompts are run this many tokens at a time, decode steps of
# the other sequences in between, so one long prompt does not stall everyone's stream.
PREFILL_STEP = 2048
# Default cap on sequences decoded together per model; more wait inside the batch queue.
MAX_SEQUENCES = 16
# A sequence alone with at most this many prompt tokens still to run decodes by itself at
# once, its prefill in one step; a longer rest is chunked by the lane (or the batch).
SOLO_MAX_PREFILL = 512
# On a GPU the lone sequence rejoins feeding up to this many tokens again, as many as the
# newcomer's prefill: padded to that length anyway, so the extra rows cost nothing there. On a
# CPU the padding is real work (and the gain, host syncs on CUDA, unmeasured): 1 token.
REJOIN_FEED = LANE_MIN_TOKENS

attention_masks.install()  # on mlx-lm's BatchKVCache: unpadded batches attend with fused kernels


@dataclass
class _Sequence(SequenceOutput):
    """A job inside the batch: its output, and where it stands in the batch."""

    # Prompt lengths still to be reached where the cache is kept (message boundaries).
    boundaries: list[int] = field(default_factory=list)
    # Prompt and generated tokens, while decoding alone (outside the batch).
    fed: list[int] = field(default_factory=list)
    sampler: Any = None
    # Batch steps that failed with this sequence in them; the second failure fails it.
    strikes: int = 0


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
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_sequences: int = MAX_SEQUENCES,
        prefill_step: int = PREFILL_STEP,
        kv: KVQuantization | None = None,
        lockstep: Lockstep | None = None,
        rejoin_feed: int | None = None,
    ) -> None:
        self.loaded = loaded
        if rejoin_feed is None:
            rejoin_feed = REJOIN_FEED if mx.default_device() == mx.gpu else 1
        self._rejoin_feed = rejoin_feed
        # A distributed model's ranks: every sampled token is rank 0's (lockstep.py).
        self._lockstep = lockstep
        self._kv = kv
        # With quantized caches: requests admitted while another one is served, in order.
        self._waiting: deque[GenerationJob] = deque()
        self._max_sequences = max_sequences
        self._prefill_step = prefill_step
        self._generator = self._new_generator()
        self._masks = BatchMasks()  # grammar rows' masks, filled together each step
        self._samplers = SharedSamplers(lockstep.agreed if lockstep is not None else None)
        self._running: dict[int, _Sequence] = {}
        self._lane = PrefillLane(loaded.model, chunk=prefill_step)
        self._solo: Solo | None = None
        self._solo_uid = 0
        self._eos = set(loaded.tokenizer.eos_token_ids)
        self.failures = StepFailures()
        # Prompt tokens the prefix cache gave so far: in the digest, so ranks whose caches hit
        # differently are caught at the next turn.
        self._reused = 0

    def _new_generator(self) -> BatchGenerator:
        eos = sorted(self.loaded.tokenizer.eos_token_ids)
        return BatchGenerator(
            self.loaded.model,
            stop_tokens=[[t] for t in eos],
            completion_batch_size=self._max_sequences,
            prefill_batch_size=min(self._max_sequences, 8),
            prefill_step_size=self._prefill_step,
        )

    def _sampler(self, job: GenerationJob) -> Any:
        return self._samplers.get(job.sampler_args)

    def digest(self) -> list[int]:
        """The batch's state in a few numbers, which every rank of a distributed model shares."""
        outputs = sum(s.output_tokens for s in self._running.values())
        return [len(self._running), len(self._lane), len(self._waiting), outputs, self._reused]

    def __len__(self) -> int:
        return len(self._running) + len(self._lane) + len(self._waiting)

    @property
    def running(self) -> dict[int, _Sequence]:
        """The sequences decoding (alone or in the batch), by uid."""
        return self._running

    def admit(self, job: GenerationJob) -> None:
        if job.dropped:
            return
        self._drop_cancelled()  # a retry of an abandoned request finds its prefill
        if self._kv is not None and (self._running or self._lane or self._waiting):
            self._waiting.append(job)  # quantized caches do not batch: its turn comes after theirs
            return
        self._start(job)

    def _start(self, job: GenerationJob) -> None:
        seq = _Sequence(
            job=job, detokenizer=self.loaded.tokenizer.detokenizer, stops=StopSequenceMatcher(job.stop_sequences)
        )
        reused = self.enter(seq, job.prompt)
        # As the API counts it: only what is prefilled up to the last breakpoint is written.
        created = max(0, min(job.cache_end, len(job.prompt)) - reused) if job.prefix_cache is not None else 0
        ended_at = reused if job.prefix_cache is not None and reused < len(job.prompt) - 1 else None
        job.emit(
            Started(
                prompt_tokens=len(job.prompt),
                cache_read_tokens=reused,
                cache_creation_tokens=created,
                reuse_ended_at=ended_at,
                reuse_ended_in=None if ended_at is None else job.part_of_prompt(ended_at),
                phases=job.phases,
            )
        )

    def enter(self, seq: _Sequence, tokens: list[int]) -> int:
        """Put a sequence whose context is `tokens` into the lane or the batch; return how many
        of them the prefix cache already held."""
        job = seq.job
        cache, rest = None, tokens
        if job.prefix_cache is not None:
            looked = time.perf_counter()
            cache, rest = job.prefix_cache.take(job.cache_key, self.loaded.model, tokens)
            job.phases = msgspec.structs.replace(job.phases, cache=(time.perf_counter() - looked) * 1000)
        if self._kv is not None:
            cache = quantized(cache if cache is not None else make_prompt_cache(self.loaded.model), self._kv)
        reused = len(tokens) - len(rest)
        self._reused += reused
        ahead = job.cuts(reused, len(tokens))
        if len(rest) > LANE_MIN_TOKENS:
            cache = cache if cache is not None else make_prompt_cache(self.loaded.model)
            self._lane.add(Prefill(job=job, cache=cache, done=reused, boundaries=ahead, carry=(seq, tokens)))
            return reused
        self._go_on(seq, tokens, reused, cache, ahead)
        return reused

    def _go_on(self, seq: _Sequence, tokens: list[int], done: int, cache: Any, ahead: list[int]) -> None:
        """A sequence whose prompt is in up to `done`: alone, it decodes by itself at once;
        otherwise it joins the batch. With quantized caches it is alone (the others wait)."""
        busy = self._running or self._solo is not None or self._lane or len(tokens) - done > SOLO_MAX_PREFILL
        if self._kv is None and busy:
            self._insert(seq, tokens, done, cache, ahead)
            return
        cache = cache if cache is not None else make_prompt_cache(self.loaded.model)
        self._solo_uid -= 1  # below BatchGenerator's uids, which count up from 0
        self._running[self._solo_uid] = seq
        self._solo = Solo(self._solo_uid, self._solo_steps(seq, tokens, ahead, done, cache), cache)

    def _solo_steps(self, seq: _Sequence, tokens: list[int], ahead: list[int], done: int, cache: Any) -> Steps:
        seq.fed, seq.boundaries = list(tokens), ahead
        seq.sampler = self._sampler(seq.job)
        return solo_steps(
            self.loaded,
            seq.job,
            seq.fed,
            seq.boundaries,
            done,
            cache,
            max_tokens=seq.job.max_tokens - seq.output_tokens,
            sampler=seq.sampler,
            prefill_step=self._prefill_step,
        )

    def _insert(self, seq: _Sequence, tokens: list[int], reused: int, cache: Any, ahead: list[int]) -> None:
        segments = _split(tokens[reused:], reused, tuple(ahead))
        # Company: the lone sequence goes back into the batch, feeding (on a GPU) as many tokens
        # as the newcomer's first prefill, so both start decoding in one step: fed 1, it went on
        # alone first, and a 4-stream burst's newcomers waited ~70 ms more (H200).
        self._rejoin(feed=min(self._rejoin_feed, len(segments[0]) + (len(segments) > 1)))
        job = seq.job
        seq.sampler = self._sampler(job)
        (uid,) = self._generator.insert_segments(
            [segments],
            max_tokens=[job.max_tokens - seq.output_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[tokens[:reused]],
            samplers=[seq.sampler],
            logits_processors=[processors_of(job)],
        )
        seq.boundaries = ahead
        seq.fed = list(tokens)
        self._running[uid] = seq

    def step(self) -> None:
        """One decode step for every generating sequence (and a prefill chunk for new ones),
        then a chunk of the long prompt at the head of the lane."""
        self._drop_cancelled()
        if self._solo is not None:
            self._guarded_solo_step()
        elif self._running:
            self._batch_step()
        # A newcomer waiting for its first token goes first; others share the step with the lane.
        if self._lane and not any(s.awaits_first_text for s in self._running.values()):
            self._lane_step(shared=bool(self._running))
        self._next_waiting()

    def _next_waiting(self) -> None:
        """With quantized caches: once nobody is served, the first request still waiting starts."""
        while self._waiting and not self._running and not self._lane:
            job = self._waiting.popleft()
            if job.dropped:
                continue
            try:
                self._start(job)
            except Exception as exc:  # noqa: BLE001 — this request fails; the next one goes on
                self.fail_one(job, exc)

    def _batch_step(self) -> None:
        try:
            with self._masks.step(self._generator):
                prompt_responses, responses = self._generator.next()
        except Exception as exc:  # the generator is half-stepped: start anew
            if self._lockstep is not None:
                raise  # the other ranks stepped: only the whole group can fail (GenerationWorker)
            batch_recovery.recover_failed_step(self, exc)
            return
        for r in prompt_responses:
            batch_recovery.guarded(self, r.uid, self._keep_boundary, r)
        for r in responses:
            seq = self._running.get(r.uid)
            if seq is not None:
                batch_recovery.guarded(self, r.uid, self._on_token, r.uid, seq, r)
        batch_recovery.fail_broken_samplers(self)
        alone = [r.uid for r in prompt_responses if r.end_of_prompt]
        if len(alone) == 1 and len(self._running) == 1 and alone[0] in self._running:
            batch_recovery.guarded(self, alone[0], self._go_solo, alone[0])

    def stop_stepping(self, uid: int) -> None:
        """Its steps end, alone or in the batch (it may have left the batch already)."""
        if self._solo is not None and self._solo.uid == uid:
            self._solo.steps.close()
            self._solo = None
            return
        try:
            self._generator.remove([uid])
        except Exception:  # noqa: BLE001, S110 — not there any more: nothing to take out
            pass

    def restart_generator(self) -> None:
        """Close the generator and start a fresh one: a half-stepped one cannot be trusted again."""
        self._generator.close()
        self._generator = self._new_generator()

    def _lane_step(self, *, shared: bool) -> None:
        try:
            ready = self._lane.step(shared=shared, on_boundary=self._lane_boundary)
        except Exception as exc:  # only this prompt's prefill ran: it alone fails
            if self._lockstep is not None:
                raise
            failed = self._lane.pop_failed()
            if failed is not None:
                failed.job.emit(failure_event(exc, [failed.job.request_id]))
            return
        if ready is not None:
            seq, tokens = ready.carry
            try:
                self._go_on(seq, tokens, ready.done, ready.cache, ready.boundaries)
            except Exception as exc:  # noqa: BLE001
                seq.job.emit(failure_event(exc, [seq.job.request_id]))

    def _lane_boundary(self, prefill: Prefill, at: int) -> None:
        job = prefill.job
        if job.prefix_cache is not None:
            tokens = prefill.carry[1]
            job.prefix_cache.put(job.cache_key, tokens[:at], snapshot(prefill.cache), persist=at == job.system_end)

    def _go_solo(self, uid: int) -> None:
        """Its prompt is in, nobody else is here: decode with generate_step. The batch's first
        sampled token is dropped and recomputed from the last prompt token (one extra step)."""
        seq = self._running[uid]
        ((cache, tokens),) = self._generator.remove([uid], return_prompt_caches=True).values()
        trim_prompt_cache(cache, 1)
        self._solo = Solo(uid, self._solo_steps(seq, list(tokens), [], len(tokens) - 1, cache), cache)

    def _guarded_solo_step(self) -> None:
        solo = self._solo
        assert solo is not None
        try:
            self._solo_step()
        except Exception as exc:  # the lone sequence fails, nobody else was in it
            if self._lockstep is not None:
                raise
            if self._solo is solo:
                self.failures.record(exc)
            batch_recovery.retry_failed_solo(self, solo, exc)
            return
        batch_recovery.fail_broken_samplers(self)

    def _solo_step(self) -> None:
        solo = self._solo
        assert solo is not None
        seq = self._running[solo.uid]
        step = next(solo.steps, None)
        if step is None:  # generate_step stops at its max_tokens
            self._end_solo(solo, seq, "length")
            return
        token = int(step[0])
        seq.fed.append(token)
        finish = "stop" if token in self._eos else None
        if finish is None and seq.output_tokens + 1 >= seq.job.max_tokens:
            finish = "length"
        if self._take_token(seq, token, finish):
            finish = "stop"
        if finish is not None:
            self._end_solo(solo, seq, finish)

    def _end_solo(self, solo: Solo, seq: _Sequence, finish: str | None) -> None:
        """Close the iterator (on this thread), keep the cache, report if it finished."""
        solo.steps.close()
        self._solo = None
        del self._running[solo.uid]
        if seq.job.prefix_cache is not None:
            seq.job.prefix_cache.put(seq.job.cache_key, seq.fed, solo.cache)
        if finish is not None:
            self._finish(seq, finish)

    def _rejoin(self, feed: int = 1) -> None:
        """The lone sequence goes back into the batch: its cache minus at least the last token,
        which the batch feeds again to sample the next one (minus `feed` tokens if it can)."""
        solo = self._solo
        if solo is None:
            return
        seq = self._running.pop(solo.uid)
        solo.steps.close()
        self._solo = None
        cached = min(solo.cache[0].offset, len(seq.fed) - 1)  # boundaries up to here are kept already
        keep = cut_for_batch(solo, len(seq.fed), feed)
        ahead = [b for b in seq.boundaries if cached < b < len(seq.fed)]
        seq.sampler = self._sampler(seq.job)
        (uid,) = self._generator.insert_segments(
            [_split(seq.fed[keep:], keep, tuple(ahead))],
            max_tokens=[seq.job.max_tokens - seq.output_tokens],
            caches=[solo.cache] if keep else None,
            all_tokens=[seq.fed[:keep]],
            samplers=[seq.sampler],
            logits_processors=[processors_of(seq.job)],
        )
        seq.boundaries = ahead
        self._running[uid] = seq

    def _drop_cancelled(self) -> None:
        self._waiting = deque(j for j in self._waiting if not j.dropped)
        solo = self._solo
        if solo is not None and self._running[solo.uid].job.dropped:
            self._end_solo(solo, self._running[solo.uid], None)
        for prefill in self._lane.drop(lambda p: not p.job.dropped):
            job = prefill.job
            if job.prefix_cache is not None and prefill.done > 0:
                job.prefix_cache.put(job.cache_key, prefill.carry[1][: prefill.done], prefill.cache)
        gone = [uid for uid, seq in self._running.items() if seq.job.dropped]
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
        return seq.take(token, finish)

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
        self.failures.served()
        seq.finish(finish)

    def fail_one(self, job: GenerationJob, exc: Exception) -> None:
        job.emit(failure_event(exc, [job.request_id]))

    def fail_everything(self, exc: Exception) -> None:
        """Every request here fails and the batch starts over empty (batch_recovery.py)."""
        batch_recovery.fail_everything(self, exc)

    def jobs(self) -> list[GenerationJob]:
        """Every request here: decoding, in the lane, or waiting its turn."""
        return [s.job for s in self._running.values()] + [p.job for p in self._lane] + list(self._waiting)

    def empty(self) -> None:
        """Take every request out, wherever it is, and start over with a fresh generator."""
        self._waiting.clear()
        if self._solo is not None:
            self._solo.steps.close()
            self._solo = None
        self._running.clear()
        self._lane.drop(lambda p: False)
        self.restart_generator()

    def close(self) -> None:
        if self._solo is not None:
            self._solo.steps.close()
            self._solo = None
        for seq in self._running.values():
            seq.job.cancelled.set()
            seq.job.dropped = True
        for prefill in self._lane.drop(lambda p: False):
            prefill.job.cancelled.set()
            prefill.job.dropped = True
        for job in self._waiting:
            job.cancelled.set()
            job.dropped = True
        self._waiting.clear()
        self._running.clear()
        self._generator.close()
