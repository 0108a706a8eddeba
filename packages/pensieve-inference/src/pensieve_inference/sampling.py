"""Samplers made once per request from its sampling fields, safe to run inside a shared batch.

mlx-lm's samplers raise while the batch builds its step graph (a `top_k` past the vocabulary,
say): the step is then half done for every sequence in it. Values the API allows but the model
cannot use are clamped here, and whatever a sampler still raises is caught, so the step goes on
and only that sequence fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx_lm.sample_utils import make_sampler

from pensieve_core import GenerationRequest

# The API's default sampling temperature.
DEFAULT_TEMPERATURE = 1.0

Sampler = Callable[[mx.array], mx.array]


def sampler_args(request: GenerationRequest, vocab_size: int) -> dict[str, Any]:
    """mlx-lm's make_sampler arguments (the values' ranges are the wire's to check, in
    pensieve-api-models). A `top_k` at or past the vocabulary keeps every token, which is what
    "no top-k" (0) means to mlx-lm: only the engine knows the vocabulary."""
    temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    top_p = request.top_p or 0.0
    top_k = request.top_k or 0
    if top_k >= vocab_size:
        top_k = 0
    return {"temp": float(temperature), "top_p": float(top_p), "top_k": top_k}


class GuardedSampler:
    """A request's sampler that never raises into the batch step: on an error it answers
    greedily for this step and keeps the error, for the batch to fail this sequence alone."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self.error: Exception | None = None

    def __call__(self, logprobs: mx.array) -> mx.array:
        if self.error is None:
            try:
                return self._sampler(logprobs)
            except Exception as exc:  # noqa: BLE001 — kept and reported for this sequence only
                self.error = exc
        return mx.argmax(logprobs, axis=-1)


def make_request_sampler(
    args: dict[str, Any], *, agree: Callable[[Sampler], Sampler] | None = None
) -> Sampler | GuardedSampler:
    """`agree`: makes a sampler's tokens rank 0's on every rank of a distributed model."""
    sampler = make_sampler(**args)
    if agree is not None:
        sampler = agree(sampler)
    if args["temp"] == 0:
        return sampler  # mlx-lm's shared greedy sampler: batched in one call, and it cannot fail
    return GuardedSampler(sampler)


class SharedSamplers:
    """One sampler per distinct sampling values, shared by a batch's requests: mlx-lm's
    GenerationBatch samples its rows in one call only when they hold the same sampler object,
    and otherwise slices and samples row by row (a few device ops a row, each step). Values
    that make a sampler fail make it fail for every request holding them, so sharing one
    changes no request's outcome; a sampler that failed is not handed out again."""

    LIMIT = 64  # distinct sampling values kept; requests' values rarely vary

    def __init__(self, agree: Callable[[Sampler], Sampler] | None = None) -> None:
        self._agree = agree
        self._made: dict[tuple[Any, ...], Sampler | GuardedSampler] = {}

    def get(self, args: dict[str, Any]) -> Sampler | GuardedSampler:
        key = tuple(sorted(args.items()))
        sampler = self._made.get(key)
        if sampler is None or (isinstance(sampler, GuardedSampler) and sampler.error is not None):
            if len(self._made) >= self.LIMIT:
                self._made.clear()
            sampler = self._made[key] = make_request_sampler(args, agree=self._agree)
        return sampler
