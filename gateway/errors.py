"""One error tree for the gateway.

GatewayError                      any failure the gateway reports to a client
 +-- InvalidRequest               400 invalid_request_error
 |    +-- InvalidJSON             400 invalid_request_error, code invalid_json
 |    +-- MaxTokensExceeded       400 max_tokens_exceeded: above the tenant's or key's cap
 |    +-- ClientClosed            499 client_closed_request: recorded, never answered
 +-- AuthenticationFailed         401 invalid_api_key
 |    +-- ExpiredApiKey           401 expired_api_key (the key's `expires` has passed)
 +-- PolicyViolation              403 policy_violation
 +-- NotFound                     404 not_found_error
 |    +-- ModelNotFound           404 model_not_found
 +-- RequestTooLarge              413 request_too_large
 +-- RateLimited                  429 rate_limit_exceeded, with Retry-After and x-ratelimit-*
 |    +-- QuotaExhausted          429 insufficient_quota: the month's token budget is spent
 +-- UpstreamError                502 upstream_error (connect failures, bad upstream replies)
 |    +-- UpstreamStatusError     the upstream answered with an error status; carries its body
 +-- NoHealthyBackend             503 no_healthy_backend
 +-- ServiceUnavailable           503 service_unavailable (stores down, shutting down)
 |    +-- AuditUnavailable        503 audit_unavailable
 |    +-- LimitsUnavailable       503 limits_unavailable: the limits store cannot be reached
 +-- UpstreamTimeout              504 upstream_timeout
 +-- NotImplementedByUpstream     501 not_implemented

Each class knows its HTTP status and its OpenAI error type, so translating an error into a response
is one function (`GatewayError.body`) and never a table spread over the code.
"""

from __future__ import annotations

import math
from typing import Any

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"
    limit_kind: str | None = None  # set on refusals by a limit: the kind it is counted under

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.details = details

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.details:
            error.update(self.details)
        return {"error": error}

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code: str | None = None


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class ClientClosed(InvalidRequest):
    """The client went away before its answer (or before its request body arrived): the request
    is recorded with nginx's 499, and nothing is sent."""

    status = 499
    code = "client_closed_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ExpiredApiKey(AuthenticationFailed):
    code = "expired_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "insufficient_role"


class PolicyViolation(GatewayError):
    status = 403
    type = "policy_violation"
    code = "policy_violation"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class MaxTokensExceeded(InvalidRequest):
    code = "max_tokens_exceeded"
    limit_kind = "max_tokens"


class RateLimited(GatewayError):
    """`limit_kind` names the limit that refused (the label of `sgw_limit_refusals_total`)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        limit_kind: str = "requests_per_minute",
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.limit_kind = limit_kind
        self.headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))
        self.headers.setdefault("retry-after-ms", str(max(1, math.ceil(retry_after * 1000))))


class QuotaExhausted(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; the body is already in the OpenAI envelope."""

    def __init__(
        self, status: int, envelope: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        error = envelope.get("error") or {}
        super().__init__(
            str(error.get("message") or f"upstream returned {status}"), headers=headers
        )
        self.status = status
        self.upstream_envelope = envelope

    @property
    def retryable(self) -> bool:
        """5xx and 429 may succeed elsewhere; 4xx (context length, content) never move."""
        return self.status >= 500 or self.status == 429

    def envelope(self) -> dict[str, Any]:
        return self.upstream_envelope


class NoHealthyBackend(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "no_healthy_backend"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class NotImplementedByUpstream(GatewayError):
    status = 501
    type = "invalid_request_error"
    code = "not_implemented"


class AuditUnavailable(ServiceUnavailable):
    code = "audit_unavailable"


class LimitsUnavailable(ServiceUnavailable):
    code = "limits_unavailable"
    limit_kind = "store_unavailable"
