"""Translate what upstreams say when they fail into the OpenAI error envelope."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import UpstreamStatusError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def normalise_error_body(status: int, body: bytes) -> dict[str, Any]:
    """OpenAI's `{"error": {...}}`, vLLM's older flat `{"object": "error", ...}`, FastAPI's
    `{"detail": ...}` or plain text all become `{"error": {message, type, param, code}}`."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    error: dict[str, Any] = {}
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict):
            error = dict(data["error"])
        elif data.get("object") == "error" or "message" in data:
            error = {k: data.get(k) for k in ("message", "type", "param", "code")}
        elif "detail" in data:
            error = {"message": str(data["detail"])}
        elif isinstance(data.get("error"), str):
            error = {"message": data["error"]}
    if not error.get("message"):
        text = body.decode("utf-8", "replace").strip()[:500]
        error["message"] = text or f"upstream returned HTTP {status}"
    error.setdefault(
        "type", _TYPES.get(status, "upstream_error" if status >= 500 else "invalid_request_error")
    )
    if error.get("type") is None:
        error["type"] = _TYPES.get(status, "upstream_error")
    error.setdefault("param", None)
    error.setdefault("code", None)
    return {"error": error}


def status_error(status: int, body: bytes, retry_after: str | None) -> UpstreamStatusError:
    headers = {"retry-after": retry_after} if retry_after else None
    return UpstreamStatusError(status, normalise_error_body(status, body), headers=headers)
