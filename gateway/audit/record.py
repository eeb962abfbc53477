"""The audit record of one request, refused ones included, built from the proxy's `Exchange`.

A request answered at once has one record (`kind: request`). A stream has two, under the same
`request_id`: `admitted`, committed before its first byte (who, the decision, the deployment with
its facts, the policy revision; no status yet), and `completed` (status, usage, durations),
pointing back at it with `admitted_seq`. The writer adds `correction` records (the client of a
record whose commit was not confirmed in time was answered 503) and `outage` records. Queries and
reports merge the records of a request (`gateway/audit/query.py`), so nothing is counted twice.

Never the API key (only its id), never content unless the tenant's audit mode says so:
`none` (default), `hash` (HMAC-SHA-256 under a per-tenant key kept in the store, so destroying
the key later makes the hashes unlinkable), or `full`. Integers and strings only, so the canonical
JSON, and therefore the leaf hash, is defined (`canonical.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from gateway.exchange import Exchange
from gateway.policy.apis import API
from gateway.policy.decision import verdict
from gateway.policy.schema import AuditContent

FORMAT_VERSION = 1


def rfc3339(timestamp: float) -> str:
    """UTC with microseconds, as `2026-11-23T15:04:05.123456Z` (sorts as text in time order)."""
    seconds, micros = divmod(round(timestamp * 1_000_000), 1_000_000)
    return f"{_whole_second(seconds)}.{micros:06d}Z"


def _whole_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def content_mode(exchange: Exchange) -> AuditContent:
    if exchange.decision is None:
        return AuditContent.NONE
    route = exchange.decision.route
    tenant = route.compiled.policy.tenants.get(route.tenant)
    return tenant.audit.content if tenant else AuditContent.NONE


class RecordBuilder:
    """Builds the record of each request, keeping the time's whole second between records (most
    records of a busy second share it). A deployment's facts come from the compiled policy the
    request was routed under, shared between records and never changed."""

    def __init__(self) -> None:
        self._second = -1
        self._second_text = ""

    def time(self, timestamp: float) -> str:
        seconds, micros = divmod(round(timestamp * 1_000_000), 1_000_000)
        if seconds != self._second:
            self._second, self._second_text = seconds, _whole_second(seconds)
        return f"{self._second_text}.{micros:06d}Z"

    def build(
        self,
        exchange: Exchange,
        finished: float,
        content_key: bytes | None,
        mode: AuditContent,
        admission: bool = False,
    ) -> dict[str, Any]:
        decision = exchange.decision
        route = decision.route if decision is not None else None
        error = exchange.error
        usage = exchange.usage
        first_byte = exchange.first_byte_s
        if admission:
            kind = "admitted"
        elif exchange.admitted_seq is not None:
            kind = "completed"
        else:
            kind = "request"
        record: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "kind": kind,
            "time": self.time(exchange.started_wall),
            "request_id": exchange.request_id,
            "decision_id": exchange.decision_id,
            "tenant": exchange.principal.tenant,
            "key_id": exchange.principal.key_id,
            "api": API[exchange.api].name,
            "requested_model": exchange.model,
            "stream": exchange.stream,
            "status": exchange.status,
            "duration_us": round((finished - exchange.started) * 1e6),
            "first_byte_us": round(first_byte * 1e6) if first_byte is not None else None,
            "attempts": [
                {
                    "deployment": a.deployment,
                    "outcome": a.outcome,
                    "duration_us": round(a.duration_s * 1e6),
                }
                for a in exchange.attempts
            ],
            "usage": (
                {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                }
                if usage
                else None
            ),
            "policy_revision": route.revision if route else None,
            "models": route.models if route else None,
            "data_class": route.data_class if route else None,
            "decision": verdict(decision, error)[0],
            "refusal": decision.record_refusal() if decision is not None else None,
            "deployment": (
                route.compiled.facts[exchange.deployment.id].record
                if route and exchange.deployment
                else None
            ),
            "error": {"type": error.type, "code": error.code} if error else None,
        }
        if admission:
            record["status"] = record["duration_us"] = record["usage"] = None
            return record
        if exchange.admitted_seq is not None:
            record["admitted_seq"] = exchange.admitted_seq
        if mode is not AuditContent.NONE:
            record["content"] = _content(exchange, mode, content_key)
        return record


def _content(exchange: Exchange, mode: AuditContent, key: bytes | None) -> dict[str, Any]:
    request, response = exchange.request_body, bytes(exchange.response_body)
    if mode is AuditContent.FULL:
        return {
            "mode": "full",
            "request": request.decode("utf-8", "replace"),
            "response": response.decode("utf-8", "replace"),
        }
    assert key is not None
    return {
        "mode": "hash",
        "request_hmac": hmac.new(key, request, hashlib.sha256).hexdigest(),
        "response_hmac": hmac.new(key, response, hashlib.sha256).hexdigest(),
    }
