"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pensieve_core import Engine
from pensieve_core.errors import InvalidRequestError

from ..models import ServedModels

_encoder = msgspec.json.Encoder()


class ModelInfo(msgspec.Struct, tag_field="type", tag="model"):
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int
    max_tokens: int


class ModelList(msgspec.Struct):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None


def _info(engine: Engine, created: datetime, model_id: str | None = None) -> ModelInfo:
    card = engine.model
    return ModelInfo(
        id=model_id or card.id,
        display_name=card.id,
        created_at=created.isoformat().replace("+00:00", "Z"),
        max_input_tokens=card.context_length,
        max_tokens=card.context_length,
    )


def _created(request: Request) -> datetime:
    return datetime.fromtimestamp(request.app.state.started_wall, tz=timezone.utc)


async def list_models(request: Request) -> Response:
    models: ServedModels = request.app.state.models
    infos = [_info(e, _created(request)) for e in models.engines()]
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
    return Response(_encoder.encode(_info(engine, _created(request), model_id)), media_type="application/json")
