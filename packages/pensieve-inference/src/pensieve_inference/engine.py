"""MLXEngine: the core Engine protocol on mlx-lm, with all MLX work on one worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog

from pensieve_core import Failed, Finished, GenerationEvent, GenerationRequest, ModelCard
from pensieve_core.errors import RankLostError
from pensieve_metal import AppliedLimits, apply_memory_limits, prefix_cache_budget
from pensieve_model_support import Hub, LoadedModel, ModelRef, load_model

from .disk_cache import DiskPrefixStore
from .jobs import GenerationJob
from .kv_quant import kv_quantization
from .lockstep import Lockstep, follow_spec, follower_spec
from .options import EngineOptions
from .plan import GenerationPlan, ModelLimits, make_plan
from .prefix_cache import PrefixCache
from .prompt import PromptRenderer
from .render_pool import RenderPool
from .worker import GenerationWorker

log = structlog.get_logger("pensieve.inference")


def _vocab_size(loaded: LoadedModel) -> int:
    """Rows of the model's logits (its config says; else the tokenizer's vocabulary)."""
    for config in (loaded.config, loaded.config.get("text_config")):
        if isinstance(config, dict) and isinstance(config.get("vocab_size"), int):
            return int(config["vocab_size"])
    return len(loaded.tokenizer.vocab)


def _load(
    ref: ModelRef, hub: Hub, options: EngineOptions, download: bool, lockstep: Lockstep | None, pipeline: bool
) -> LoadedModel:
    kernels = options.kernels_dir
    if lockstep is None:
        return load_model(ref, hub, download=download, converted_dir=options.converted_dir, kernels_dir=kernels)
    loaded = load_model(ref, hub, download=download, group=lockstep.group, pipeline=pipeline, kernels_dir=kernels)
    lockstep.barrier()  # every rank has its shard
    lockstep.introduce(loaded.weights_bytes)
    return loaded


class MLXEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        worker: GenerationWorker,
        card: ModelCard,
        options: EngineOptions | None = None,
        *,
        owns_worker: bool = True,
        lockstep: Lockstep | None = None,
    ) -> None:
        options = options or EngineOptions()
        # The ranks this model is sharded across (rank 0 serves; the others follow its turns).
        self.lockstep = lockstep
        self._loaded = loaded
        self._worker = worker
        self._owns_worker = owns_worker
        self._card = card
        self._renderer = PromptRenderer(loaded.tokenizer, card.id)
        self._vocab_size = _vocab_size(loaded)
        # Templating and tokenizing: off the event loop, bounded, counting apart from generating.
        self._render_pool = RenderPool("render", threads=2)
        self._count_pool = RenderPool("count", threads=1)
        dialect = self._renderer.dialect
        log.info(
            "tool_dialect",
            model=card.id,
            dialect=dialect.name,
            families=", ".join(dialect.families),
            thinking=bool(loaded.tokenizer.has_thinking),
        )
        if options.kv_bits is not None:
            log.info("kv_cache_quantized", model=card.id, bits=options.kv_bits, batching=False)
        self.max_output_tokens = options.max_output_tokens
        cache_bytes = options.prefix_cache_bytes
        if cache_bytes is None:  # not configured: a share of what the weights leave
            cache_bytes = prefix_cache_budget(loaded.weights_bytes)
        self.kv_quantization = kv_quantization(loaded, options.kv_bits)
        disk = None
        # Quantized caches stay in memory: the disk store's files hold full-precision layouts. A
        # sharded model's ranks too: a restore decided by each rank's own disk would part them.
        persist = options.prefix_cache_disk_bytes > 0 and self.kv_quantization is None and lockstep is None
        if options.prefix_cache_dir is not None and persist and cache_bytes > 0:
            disk = DiskPrefixStore(
                options.prefix_cache_dir, loaded.identity, options.prefix_cache_disk_bytes, model_name=card.id
            )
        self.prefix_cache = (
            PrefixCache(cache_bytes, options.prefix_cache_entries, disk=disk) if cache_bytes > 0 else None
        )
        # How lone requests decode (startup swaps in a draft model's when one is configured).
        self.speculation = options.speculation()

    @classmethod
    async def load(
        cls,
        ref: ModelRef,
        hub: Hub,
        options: EngineOptions | None = None,
        *,
        download: bool = True,
        worker: GenerationWorker | None = None,
        fallback_from: str | None = None,
        note: str | None = None,
        lockstep: Lockstep | None = None,
        pipeline: bool = False,
    ) -> MLXEngine:
        """Load on the worker thread; several engines may share one worker (one MLX thread).
        `fallback_from` and `note` go on the card of a model served in another's place.
        `lockstep`: this is rank 0 of a sharded model; every other rank calls `load_shard`."""
        options = options or EngineOptions()
        owns = worker is None
        worker = worker or GenerationWorker(max_sequences=options.max_sequences)
        try:
            loaded: LoadedModel = await asyncio.wrap_future(
                worker.call(lambda: _load(ref, hub, options, download, lockstep, pipeline))
            )
        except BaseException:
            if owns:
                worker.stop()
            raise
        card = ModelCard(
            id=ref.name, source=ref.kind, context_length=loaded.context_length, fallback_from=fallback_from, note=note
        )
        engine = cls(loaded, worker, card, options, owns_worker=owns, lockstep=lockstep)
        if lockstep is not None:
            await asyncio.wrap_future(worker.join(lockstep))
        return engine

    @classmethod
    def load_shard(
        cls, ref: ModelRef, hub: Hub, options: EngineOptions, lockstep: Lockstep, *, pipeline: bool = False
    ) -> tuple[MLXEngine, GenerationWorker]:
        """A rank other than 0: its shard, and a worker to `follow` rank 0 on the calling thread."""
        worker = GenerationWorker(max_sequences=options.max_sequences, thread=False)
        loaded = _load(ref, hub, options, False, lockstep, pipeline)
        card = ModelCard(id=ref.name, source=ref.kind, context_length=loaded.context_length)
        return cls(loaded, worker, card, options, owns_worker=False, lockstep=lockstep), worker

    @classmethod
    def load_sync(
        cls,
        ref: ModelRef,
        hub: Hub,
        options: EngineOptions | None = None,
        *,
        download: bool = True,
        worker: GenerationWorker | None = None,
    ) -> MLXEngine:
        return asyncio.run(cls.load(ref, hub, options, download=download, worker=worker))

    @property
    def model(self) -> ModelCard:
        return self._card

    @property
    def degraded(self) -> str | None:
        """Why this model's batch steps keep failing (the last error), or None while it serves."""
        failing, error = self._worker.health(self._loaded.model)
        return error if failing else None

    @property
    def active_generations(self) -> int:
        return self._worker.generations(self._loaded.model)

    @property
    def weights_bytes(self) -> int:
        return self._loaded.weights_bytes

    async def limit_memory(self, wire_bytes: int) -> AppliedLimits:
        # MLX's limits are set from the thread that runs MLX work.
        limits: AppliedLimits = await asyncio.wrap_future(
            self._worker.call(lambda: apply_memory_limits(wire_bytes=wire_bytes))
        )
        return limits

    @property
    def worker(self) -> GenerationWorker:
        """The MLX thread, for loading more engines onto it (and for tests)."""
        return self._worker

    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer (for tests and tools that drive the batch themselves)."""
        return self._loaded

    async def _prompt(self, request: GenerationRequest) -> list[int]:
        return await self._count_pool.run(lambda: self._renderer.tokens(request), "counting the prompt's tokens")

    async def count_tokens(self, request: GenerationRequest) -> int:
        return len(await self._prompt(request))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Plan (on a render thread), submit to the worker, relay its events."""
        if self._worker.group_lost is not None:
            raise RankLostError(self._worker.group_lost)
        renderer, limits = self._renderer, self._limits()
        plan = await self._render_pool.run(lambda: make_plan(request, renderer, limits))
        events: asyncio.Queue[list[GenerationEvent]] = asyncio.Queue()
        job = self._job(request, plan, asyncio.get_running_loop(), events)
        if self.lockstep is not None:  # the other ranks rebuild it from this (follow_spec)
            job.spec = follower_spec(request, plan.rendered)
        self._worker.submit(self._loaded, job)
        try:
            while True:
                for event in await events.get():
                    yield event
                    if isinstance(event, (Finished, Failed)):
                        return
        finally:
            job.cancelled.set()

    def _limits(self) -> ModelLimits:
        return ModelLimits(self._card.context_length, self._vocab_size, self.max_output_tokens)

    def _job(
        self,
        request: GenerationRequest,
        plan: GenerationPlan,
        loop: asyncio.AbstractEventLoop | None,
        events: asyncio.Queue[list[GenerationEvent]] | None,
    ) -> GenerationJob:
        return GenerationJob(
            prompt=plan.rendered.tokens,
            boundaries=plan.rendered.boundaries,
            system_end=plan.rendered.system_end,
            cache_end=plan.rendered.cache_end,
            max_tokens=plan.max_tokens,
            exhausted_reason=plan.exhausted_reason,
            sampler_args=plan.sampler_args,
            stop_sequences=request.stop_sequences,
            request_id=request.request_id,
            loop=loop,
            events=events,
            tool_calls=plan.tool_calls,
            constraint=plan.constraint,
            thinking=plan.thinking,
            thinking_budget=plan.thinking_budget,
            prefix_cache=self.prefix_cache,
            cache_key=self._card.id,
            speculation=self.speculation,
            kv_quantization=self.kv_quantization,
            phases=plan.phases,
            answered=self._remembering(plan) if loop is not None else None,
        )

    def rebuild(self, spec: bytes) -> GenerationJob:
        """A follower rank's copy of rank 0's job: the same plan, on rank 0's prompt tokens (its
        encoder may have tokenized differently while an answer was being remembered)."""
        request, rendered = follow_spec(spec)
        plan = make_plan(request, self._renderer, self._limits())
        plan.rendered = rendered
        return self._job(request, plan, None, None)

    def _remembering(self, plan: GenerationPlan) -> Callable[[list[int]], object] | None:
        """For a plain-text answer (no tool calls, thinking or constraint between the tokens and
        the text), what keeps its ids for the next turn (the worker thread calls it)."""
        encoded = plan.rendered.encoded
        if encoded is None or plan.tool_calls or plan.thinking or plan.constraint or plan.thinking_budget:
            return None
        encoder, tokenizer = self._renderer.encoder, self._loaded.tokenizer
        return lambda ids: encoder.remember_answer(encoded, ids, tokenizer.decode(ids))

    async def aclose(self) -> None:
        if self.prefix_cache is not None and self.prefix_cache.disk is not None:
            await asyncio.to_thread(self.prefix_cache.disk.wait)  # no half-written files at exit
        if self._owns_worker:
            await asyncio.to_thread(self._worker.stop)
