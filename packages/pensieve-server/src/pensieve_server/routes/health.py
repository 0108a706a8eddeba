"""GET /health: public; names the model actually served and the device."""

from __future__ import annotations

import os
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pensieve_core import ModelCard
from pensieve_metal import DeviceInfo, MemorySnapshot, device_info, memory_snapshot

_encoder = msgspec.json.Encoder()


class Health(msgspec.Struct, kw_only=True):
    status: str
    model: ModelCard
    models: list[ModelCard]
    device: DeviceInfo
    memory: MemorySnapshot
    uptime_s: float
    # `pensieve start --daemon` checks that /health is answered by the process it started.
    pid: int
    # With status "degraded": the model whose batch steps keep failing, and its last error.
    problem: str | None = None


async def health(request: Request) -> Response:
    served = request.app.state.models
    problems = [f"{e.model.id}: {e.degraded}" for e in served.engines() if e.degraded]
    body = Health(
        status="degraded" if problems else "ok",
        problem="; ".join(problems) or None,
        model=served.main.model,
        models=[e.model for e in served.engines()],
        device=device_info(),
        memory=memory_snapshot(),
        uptime_s=round(time.monotonic() - request.app.state.started_at, 1),
        pid=os.getpid(),
    )
    return Response(_encoder.encode(body), media_type="application/json")


async def root(request: Request) -> Response:
    return Response("pensieve is running\n", media_type="text/plain")


async def metrics_endpoint(request: Request) -> Response:
    text = request.app.state.metrics.render()
    return Response(text, media_type="text/plain; version=0.0.4")
