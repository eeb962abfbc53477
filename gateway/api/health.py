"""Liveness and readiness, without an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json import json_response
from gateway.components import components

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    parts = components(request)
    compiled = parts.policy.current
    body = {
        "status": "ready" if parts.ready else "starting",
        "policy_revision": compiled.revision,
        "tenants": len(compiled.policy.tenants),
        "deployments": len(compiled.policy.catalog.deployments),
    }
    return json_response(body, 200 if parts.ready else 503)
