"""GET /v1/status: the server's numbers as JSON, for `pensieve status` and a status page.

/metrics has the same counts for Prometheus; this route adds what a person asks (which models,
how fast, how much the prefix cache saved) and what the status page at `/` draws (requests
running with their phase, the last ones ended, tokens per 10 s) without parsing exposition
text. Fields are only ever added: clients ignore those they do not know.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pensieve_core import ModelCard
from pensieve_metal import DeviceInfo, MemorySnapshot, device_info, memory_snapshot

from ..inflight import Ended, Running
from ..metrics import Metrics
from ..models import ServedModels
from ..ranks import RankStatus, describe
from .health import problem_of

_encoder = msgspec.json.Encoder()


class Requests(msgspec.Struct, kw_only=True):
    total: int  # HTTP requests answered, every route (/metrics: pensieve_requests_total)
    in_flight: int  # generations and token counts running or queued
    generations: int
    joined: int  # resends that joined a generation already running


class Tokens(msgspec.Struct, kw_only=True):
    input: int
    output: int
    cache_read: int  # prompt tokens the prefix cache served


class PrefixCache(msgspec.Struct, kw_only=True):
    hits: int  # generations whose prompt it served in part
    misses: int
    # Of all prompt tokens, the share read from the cache; None before the first generation.
    read_fraction: float | None


class Speed(msgspec.Struct, kw_only=True):
    # Means over the generations so far; None before the first one.
    decode_tokens_per_s: float | None
    ttft_s: float | None


class Memory(MemorySnapshot, kw_only=True):
    weights_bytes: int  # every served model's weights
    # What MLX may still take under its limit: the limit less what is in use or in its buffer cache.
    free_bytes: int


class Rates(msgspec.Struct, kw_only=True):
    """Tokens per interval over the last minutes, oldest first; the last interval is under way,
    `filled_s` into it. Prefill tokens (the prompt less what the cache read) count when it ends."""

    interval_s: float
    filled_s: float
    output_tokens: list[int]
    prefill_tokens: list[int]


class Status(msgspec.Struct, kw_only=True):
    status: Literal["ok", "degraded"]
    problem: str | None  # with "degraded": each failing model and its last error
    pid: int
    uptime_s: float
    models: list[ModelCard]
    device: DeviceInfo
    memory: Memory
    requests: Requests
    tokens: Tokens
    prefix_cache: PrefixCache
    speed: Speed
    running: list[Running]  # oldest first
    recent: list[Ended]  # the last ended, newest first
    rates: Rates
    # The processes a model sharded across ranks runs in (`pensieve start --hostfile`); else empty.
    ranks: list[RankStatus] = []


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def status_of(served: ServedModels, metrics: Metrics, started_at: float) -> Status:
    """Read on the event loop, where every count changes, with no await: one consistent reading."""
    problem = problem_of(served)
    tokens = Tokens(input=metrics.input_tokens, output=metrics.output_tokens, cache_read=metrics.cache_read_tokens)
    engines = served.engines()
    snapshot = memory_snapshot()
    weights = sum(e.weights_bytes for e in engines)
    free = snapshot.limit_bytes - snapshot.active_bytes - snapshot.cache_bytes
    running, recent = metrics.live.read()
    filled, output, prefill = metrics.rate.read()
    filled_s = round(filled, 1)
    return Status(
        status="degraded" if problem else "ok",
        problem=problem,
        pid=os.getpid(),
        uptime_s=round(time.monotonic() - started_at, 1),
        models=[e.model for e in engines],
        device=device_info(),
        memory=Memory(**msgspec.structs.asdict(snapshot), weights_bytes=weights, free_bytes=max(0, free)),
        requests=Requests(
            total=metrics.requests_total,
            in_flight=metrics.in_flight,
            generations=metrics.generations,
            joined=metrics.joined_requests,
        ),
        tokens=tokens,
        prefix_cache=PrefixCache(
            hits=metrics.prefix_hits,
            misses=metrics.prefix_misses,
            read_fraction=round(tokens.cache_read / tokens.input, 3) if tokens.input else None,
        ),
        speed=Speed(decode_tokens_per_s=_rounded(metrics.decode_rate.mean, 1), ttft_s=_rounded(metrics.ttft.mean, 3)),
        running=running,
        recent=recent,
        rates=Rates(
            interval_s=metrics.rate.interval_s, filled_s=filled_s, output_tokens=output, prefill_tokens=prefill
        ),
        ranks=describe(served.ranks),
    )


async def status(request: Request) -> Response:
    state = request.app.state
    body = status_of(state.models, state.metrics, state.started_at)
    return Response(_encoder.encode(body), media_type="application/json")
