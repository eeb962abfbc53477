"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/responses and /v1/models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.responses import StreamingResponse

from gateway.api.json import json_response
from gateway.auth.keys import Principal
from gateway.components import Components, components
from gateway.errors import GatewayError, ModelNotFound, RequestTooLarge
from gateway.policy.schema import Api
from gateway.proxy import Exchange

router = APIRouter(prefix="/v1")
DATA_CLASS_HEADER = "x-data-classification"


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _principal(parts: Components, request: Request) -> Principal:
    return parts.keys.authenticate(request.headers.get("authorization"))


async def _proxy(request: Request, api: Api) -> Response:
    parts = components(request)
    principal = _principal(parts, request)
    exchange = Exchange(request.state.request_id, principal, api)
    try:
        body = await _read_body(request, parts.settings.max_body_bytes)
        exchange.request_body = body
        data = parts.proxy.plan(exchange, body, request.headers.get(DATA_CLASS_HEADER))
        response = await parts.proxy.forward(exchange, data)
    except GatewayError as exc:
        # refusals and failures are audited too; the error is sent once its record is in
        exchange.error = exc
        exchange.status = exc.status
        await parts.proxy.finish(exchange)
        raise
    if not isinstance(response, StreamingResponse):
        await parts.proxy.finish(exchange)  # a stream finishes itself before its last event
    return response


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _proxy(request, Api.CHAT)


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _proxy(request, Api.COMPLETIONS)


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _proxy(request, Api.EMBEDDINGS)


@router.post("/responses")
async def responses(request: Request) -> Response:
    return await _proxy(request, Api.RESPONSES)


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
