"""`GET /metrics` (the path is a setting), optionally behind a bearer token."""

from __future__ import annotations

import hmac

from fastapi import Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from gateway.components import components
from gateway.errors import AuthenticationFailed


async def scrape(request: Request) -> Response:
    parts = components(request)
    token = parts.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise AuthenticationFailed("The metrics endpoint needs its bearer token")
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)
