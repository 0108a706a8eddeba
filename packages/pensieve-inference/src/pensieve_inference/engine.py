"""MLXEngine: the core Engine protocol on mlx-lm, with all MLX work on one worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pensieve_core import (
    Failed,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelCard,
    Started,
)
from pensieve_core.errors import InvalidRequestError, PromptTooLongError
from pensieve_model_support import Hub, LoadedModel, ModelRef, load_model

from .prompt import PromptRenderer
from .worker import GenerationJob, GenerationWorker

# The API's default sampling temperature.
DEFAULT_TEMPERATURE = 1.0


def sampler_args(request: GenerationRequest) -> dict[str, Any]:
    temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    if not 0.0 <= temperature <= 2.0:
        raise InvalidRequestError(f"temperature: must be between 0 and 2, got {temperature}")
    top_p = request.top_p or 0.0
    if not 0.0 <= top_p <= 1.0:
        raise InvalidRequestError(f"top_p: must be between 0 and 1, got {top_p}")
    top_k = request.top_k or 0
    if top_k < 0:
        raise InvalidRequestError(f"top_k: must be non-negative, got {top_k}")
    return {"temp": temperature, "top_p": top_p, "top_k": top_k}


class MLXEngine:
    def __init__(self, loaded: LoadedModel, worker: GenerationWorker, card: ModelCard) -> None:
        self._loaded = loaded
        self._worker = worker
        self._card = card
        self._renderer = PromptRenderer(loaded.tokenizer, card.id)

    @classmethod
    async def load(
        cls, ref: ModelRef, hub: Hub, *, download: bool = True, card: ModelCard | None = None
    ) -> MLXEngine:
        worker = GenerationWorker()
        try:
            loaded = await asyncio.wrap_future(worker.call(lambda: load_model(ref, hub, download=download)))
        except BaseException:
            worker.stop()
            raise
        card = card or ModelCard(id=ref.name, source=ref.kind, context_length=loaded.context_length)
        return cls(loaded, worker, card)

    @classmethod
    def load_sync(cls, ref: ModelRef, hub: Hub, **kwargs: Any) -> MLXEngine:
        return asyncio.run(cls.load(ref, hub, **kwargs))

    @property
    def model(self) -> ModelCard:
        return self._card

    def set_card(self, card: ModelCard) -> None:
        self._card = card
        self._renderer = PromptRenderer(self._loaded.tokenizer, card.id)

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded

    async def _prompt(self, request: GenerationRequest) -> list[int]:
        # Templating and tokenizing are not MLX work; keep them off the event loop all the same.
        return await asyncio.to_thread(self._renderer.tokens, request)

    async def count_tokens(self, request: GenerationRequest) -> int:
        return len(await self._prompt(request))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        args = sampler_args(request)
        prompt = await self._prompt(request)
        context = self._card.context_length
        if len(prompt) >= context:
            raise PromptTooLongError(len(prompt), context)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        job = GenerationJob(
            prompt=prompt,
            # The answer may use whatever the context leaves after the prompt.
            max_tokens=min(request.max_tokens, context - len(prompt)),
            sampler_args=args,
            stop_sequences=request.stop_sequences,
            request_id=request.request_id,
            loop=loop,
            events=events,
        )
        yield Started(prompt_tokens=len(prompt))
        self._worker.submit(self._loaded, job)
        try:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, (Finished, Failed)):
                    return
        finally:
            job.cancelled.set()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._worker.stop)
