"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pensieve_core import Engine
from pensieve_core.errors import InvalidRequestError

from ..models import CLAUDE_TIER_IDS, ServedModels

_encoder = msgspec.json.Encoder()


class ModelInfo(msgspec.Struct, tag_field="type", tag="model"):
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int
    max_tokens: int
    # The current SDKs' ModelInfo requires it; a served model is always usable.
    lifecycle: str = "active"


class ModelList(msgspec.Struct):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None


def _info(request: Request, engine: Engine, model_id: str | None = None, tier: str | None = None) -> ModelInfo:
    card = engine.model
    # A request may generate up to the server's output cap, never past the context.
    cap = request.app.state.settings.max_output_tokens or card.context_length
    return ModelInfo(
        id=model_id or card.id,
        display_name=f"{card.id} ({tier})" if tier else card.id,
        created_at=_created(request).isoformat().replace("+00:00", "Z"),
        max_input_tokens=card.context_length,
        max_tokens=min(cap, card.context_length),
    )


def _created(request: Request) -> datetime:
    return datetime.fromtimestamp(request.app.state.started_wall, tz=UTC)


async def list_models(request: Request) -> Response:
    models: ServedModels = request.app.state.models
    infos = [_info(request, e) for e in models.engines()]
    # One claude-* id per tier: the ids Claude Code asks for and its /model picker keeps.
    infos += [
        _info(request, e, CLAUDE_TIER_IDS[t], t)
        for t, e in models.tier_engines().items()
        if CLAUDE_TIER_IDS[t] not in models.served_ids()
    ]
    params = request.query_params
    try:
        limit = int(params.get("limit", 20))
    except ValueError as exc:
        raise InvalidRequestError("limit: must be an integer - at `limit`") from exc
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("limit: must be between 1 and 1000 - at `limit`")
    ids = [i.id for i in infos]
    if (after := params.get("after_id")) in ids:
        infos = infos[ids.index(after) + 1 :]
    elif (before := params.get("before_id")) in ids:
        infos = infos[: ids.index(before)][-limit:]
    page = infos[:limit]
    body = ModelList(
        data=page,
        has_more=len(infos) > limit,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )
    return Response(_encoder.encode(body), media_type="application/json")


async def get_model(request: Request) -> Response:
    models: ServedModels = request.app.state.models
    model_id = request.path_params["model_id"]
    engine = models.select(model_id)
    tier = next((t for t, i in CLAUDE_TIER_IDS.items() if i == model_id), None)
    return Response(_encoder.encode(_info(request, engine, model_id, tier)), media_type="application/json")
