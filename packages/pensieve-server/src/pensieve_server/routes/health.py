"""GET /health: public; names the model actually served and the device. GET /: the status page
for a browser, a line for anything else. GET /metrics: the server's counts for Prometheus (with
the key)."""

from __future__ import annotations

import os
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pensieve_core import ModelCard
from pensieve_metal import DeviceInfo, MemorySnapshot, device_info, memory_snapshot

from ..models import ServedModels
from ..status_page import status_page, wants_page

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


def problem_of(served: ServedModels) -> str | None:
    """Each model whose batch steps keep failing, with its last error; None when all are well."""
    problems = [f"{e.model.id}: {e.degraded}" for e in served.engines() if e.degraded]
    return "; ".join(problems) or None


async def health(request: Request) -> Response:
    served = request.app.state.models
    problem = problem_of(served)
    body = Health(
        status="degraded" if problem else "ok",
        problem=problem,
        model=served.main.model,
        models=[e.model for e in served.engines()],
        device=device_info(),
        memory=memory_snapshot(),
        uptime_s=round(time.monotonic() - request.app.state.started_at, 1),
        pid=os.getpid(),
    )
    return Response(_encoder.encode(body), media_type="application/json")


async def root(request: Request) -> Response:
    if wants_page(request.scope):
        return status_page()
    return Response("pensieve is running\n", media_type="text/plain")


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render(request.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})
