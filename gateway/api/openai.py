"""The OpenAI-compatible model list: /v1/models and /v1/models/{model}.

The proxied routes (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses) are
served in front of the framework by `gateway.api.proxied`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.json import json_response
from gateway.auth.keys import Principal
from gateway.components import Components, components
from gateway.errors import ModelNotFound

router = APIRouter(prefix="/v1")


def _principal(parts: Components, request: Request) -> Principal:
    return parts.keys.authenticate(request.headers.get("authorization"))


def _model_card(parts: Components, name: str) -> dict[str, object]:
    catalog = parts.policy.current.policy.catalog
    model = catalog.models.get(name)
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": model.developer if model else "alias",
    }


@router.get("/models")
async def list_models(request: Request) -> Response:
    parts = components(request)
    principal = _principal(parts, request)
    names = parts.policy.current.models_for(principal.tenant)
    return json_response({"object": "list", "data": [_model_card(parts, n) for n in names]})


@router.get("/models/{model:path}")
async def get_model(model: str, request: Request) -> Response:
    parts = components(request)
    principal = _principal(parts, request)
    if model not in parts.policy.current.models_for(principal.tenant):
        raise ModelNotFound(f"The model {model!r} does not exist", param="model")
    return json_response(_model_card(parts, model))
