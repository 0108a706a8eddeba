"""The ranks of one model sharded across processes (MLX's distributed engine): rank 0 decides,
the others follow in lockstep.

Every rank runs the same worker loop over its shard. At the start of each worker turn rank 0
sends what it took in (new requests, each with the exact prompt tokens it rendered, and the
cancellations it saw), and every rank applies it at the same point; the tokens each step samples
are rank 0's, summed into every rank inside the step's graph. The rest (batch membership, prompt
segments, prefix-cache hits and evictions, stops) follows from those inputs by the same code on
the same tokens; a digest of each rank's batch state travels with every turn, so a rank that
drifts is caught at the next turn rather than later in a mismatched collective. Transfers
ride mx.distributed (`all_sum`, as mlx-lm's own server does), on the generation stream the
model's own collectives use."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import mlx.core as mx
import msgspec
from mlx_lm.generate import generation_stream
from mlx_lm.sample_utils import make_sampler

from pensieve_core import GenerationRequest

from .prompt import RenderedPrompt

Sampler = Callable[[mx.array], mx.array]

# A turn's bytes go in one collective of this size when they fit (most turns: a few bytes).
SHARE_BLOCK = 1024


class FollowerSpec(msgspec.Struct, array_like=True):
    """A request as the other ranks rebuild it: the request, and the prompt as rank 0 rendered it."""

    request: GenerationRequest
    tokens: list[int]
    boundaries: tuple[int, ...]
    system_end: int
    cache_end: int
    thinking_open: bool


def follower_spec(request: GenerationRequest, rendered: RenderedPrompt) -> bytes:
    spec = FollowerSpec(
        request, rendered.tokens, rendered.boundaries, rendered.system_end, rendered.cache_end, rendered.thinking_open
    )
    return msgspec.msgpack.encode(spec)


def follow_spec(data: bytes) -> tuple[GenerationRequest, RenderedPrompt]:
    spec = msgspec.msgpack.decode(data, type=FollowerSpec)
    rendered = RenderedPrompt(
        spec.tokens,
        boundaries=spec.boundaries,
        system_end=spec.system_end,
        thinking_open=spec.thinking_open,
        cache_end=spec.cache_end,
    )
    return spec.request, rendered


class RankInfo(msgspec.Struct, kw_only=True):
    """What each rank says of itself once its shard is loaded (`pensieve status` lists them)."""

    rank: int
    host: str
    pid: int
    weights_bytes: int  # this rank's share of the weights
    memory_bytes: int  # MLX's active memory on this rank after loading


class Turn(msgspec.Struct, array_like=True):
    """What rank 0 took in for one worker turn, in the order it takes it."""

    admit: list[bytes]  # FollowerJob specs, msgpack
    cancel: list[int]  # admission numbers of the requests to drop
    stop: bool
    digest: list[int]  # rank 0's batch state after its previous turn


class Lockstep:
    def __init__(self, group: Any, *, rank_timeout_s: float = 120.0) -> None:
        self.group = group
        self.rank = int(group.rank())
        self.size = int(group.size())
        # A turn that does not finish in this long means a rank is gone or hung.
        self.rank_timeout_s = rank_timeout_s
        self._agreed: dict[int, Sampler] = {}
        self._greedy = make_sampler(temp=0.0)  # mlx-lm's one greedy sampler, shared by requests
        self.started = False  # the ranks' workers share their turns from here on
        self.ranks: list[RankInfo] = []

    @classmethod
    def join(cls, backend: str, *, rank_timeout_s: float = 120.0) -> Lockstep:
        """This process's place in the group MLX's launch variables describe (MLX_RANK and the
        backend's own); blocks, holding the GIL, until every rank has joined."""
        return cls(mx.distributed.init(strict=True, backend=backend), rank_timeout_s=rank_timeout_s)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, data: bytes | None) -> bytes:
        """Rank 0's bytes on every rank (the others pass None). Blocks until every rank calls it.
        One collective for most turns (their bytes fit the first block), two for longer ones."""
        with mx.stream(generation_stream):
            first = mx.zeros((SHARE_BLOCK,), dtype=mx.uint8)
            if self.leader:
                assert data is not None
                head = len(data).to_bytes(4, "little") + data[: SHARE_BLOCK - 4]
                first[: len(head)] = _array(head)
            shared = _bytes(_evaluated(mx.distributed.all_sum(first, group=self.group)))
            n = int.from_bytes(shared[:4], "little")
            if n <= SHARE_BLOCK - 4:
                return shared[4 : 4 + n]
            rest = n - (SHARE_BLOCK - 4)
            if self.leader:
                assert data is not None
                buffer = _array(data[SHARE_BLOCK - 4 :])
            else:
                buffer = mx.zeros((rest,), dtype=mx.uint8)
            return shared[4:] + _bytes(_evaluated(mx.distributed.all_sum(buffer, group=self.group)))

    def gather(self, data: bytes, *, most: int = 4096) -> list[bytes]:
        """Each rank's bytes (at most `most` of them), on every rank: what each says of itself."""
        if len(data) > most:
            raise ValueError(f"{len(data)} bytes is more than a rank's {most}")
        with mx.stream(generation_stream):
            row = mx.zeros((most + 4,), dtype=mx.uint8)
            row[:4] = _array(len(data).to_bytes(4, "little"))
            if data:
                row[4 : 4 + len(data)] = _array(data)
            rows = mx.distributed.all_gather(row[None], group=self.group)
            mx.eval(rows)
        blobs = []
        for r in range(self.size):
            raw = _bytes(rows[r])
            blobs.append(raw[4 : 4 + int.from_bytes(raw[:4], "little")])
        return blobs

    def agreed(self, sampler: Sampler) -> Sampler:
        """`sampler`, whose tokens are rank 0's on every rank. One wrapper per sampler, so a
        batch whose rows share a sampler still samples them in one call."""
        wrapped = self._agreed.get(id(sampler))
        if wrapped is None:
            group, leader = self.group, self.leader

            def wrapped(logprobs: mx.array) -> mx.array:
                tokens = sampler(logprobs)
                return mx.distributed.all_sum(tokens if leader else mx.zeros_like(tokens), group=group)

            if len(self._agreed) > 256:  # request samplers come and go: keep the shared greedy one
                self._agreed = {k: v for k, v in self._agreed.items() if k == id(self._greedy)}
            # Keyed by id: the wrapper holds the sampler, so no other sampler takes its id meanwhile.
            self._agreed[id(sampler)] = wrapped
        return wrapped

    def introduce(self, weights_bytes: int) -> list[RankInfo]:
        """Every rank's RankInfo, on every rank."""
        me = RankInfo(
            rank=self.rank,
            host=socket.gethostname(),
            pid=os.getpid(),
            weights_bytes=weights_bytes,
            memory_bytes=int(mx.get_active_memory()),
        )
        blobs = self.gather(msgspec.msgpack.encode(me))
        self.ranks = [msgspec.msgpack.decode(b, type=RankInfo) for b in blobs]
        return self.ranks

    def barrier(self) -> None:
        with mx.stream(generation_stream):
            mx.eval(mx.distributed.all_sum(mx.array(1.0), group=self.group))


def _array(data: bytes) -> mx.array:
    return mx.array(cast(Any, memoryview(data)), dtype=mx.uint8)  # MLX reads the buffer; stubs lack it


def _evaluated(array: mx.array) -> mx.array:
    mx.eval(array)
    return array


def _bytes(array: mx.array) -> bytes:
    return bytes(memoryview(cast(Any, array)))


class Watch:
    """When the worker's current turn began (None while it waits for work): a turn older than
    the group's timeout means a rank stopped answering."""

    def __init__(self) -> None:
        self.turn_began: float | None = None

    def begin(self) -> None:
        self.turn_began = time.monotonic()

    def idle(self) -> None:
        self.turn_began = None

    def stuck_for(self) -> float:
        began = self.turn_began
        return 0.0 if began is None else time.monotonic() - began
