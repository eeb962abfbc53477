"""The end of every request: its metrics and its access-log line, made from the `Exchange`.

Never the key (only its id), never the prompt or the answer, no request id as a metric label.
"""

from __future__ import annotations

import logging
import time

from gateway.errors import AuditUnavailable
from gateway.exchange import Exchange
from gateway.observability.metrics import Metrics
from gateway.policy.apis import API
from gateway.policy.decision import verdict

access = logging.getLogger("gateway.access")


class RequestObserver:
    def __init__(self, metrics: Metrics, access_log: bool) -> None:
        self.metrics = metrics
        self._access_log = access_log

    def observe(self, exchange: Exchange) -> None:
        m = self.metrics
        elapsed = time.perf_counter() - exchange.started
        tenant = m.tenant(exchange.principal.tenant)
        route = exchange.decision.route if exchange.decision is not None else None
        # a model the catalog knows, never the raw string a client sent: labels stay bounded
        model = route.requested if route is not None else ""
        dep = exchange.deployment
        country = jurisdiction = provider = ""
        if dep is not None and route is not None:
            facts = route.compiled.facts[dep.id]
            country, jurisdiction, provider = facts.country, facts.jurisdiction, facts.provider
        status = str(exchange.status)
        m.requests.inc((tenant, model, dep.id if dep else "", country, jurisdiction, status))
        api = API[exchange.api]
        m.duration.observe((tenant, api.name, "true" if exchange.stream else "false"), elapsed)
        if exchange.error is not None:
            # the class's code, not the instance's: upstreams cannot invent label values
            kind = type(exchange.error)
            m.errors.inc((tenant, kind.code or kind.type))
        result, rule = verdict(exchange.decision, exchange.error)
        m.decisions.inc((tenant, result, rule))
        for i, attempt in enumerate(exchange.attempts):
            if attempt.outcome == "ok":
                continue
            m.upstream_errors.labels(attempt.deployment, attempt.outcome).inc()
            if i + 1 < len(exchange.attempts):
                m.failovers.labels(attempt.deployment).inc()
        if exchange.error is not None and exchange.error.limit_kind is not None:
            m.limit_refusals.labels(tenant, exchange.error.limit_kind).inc()
        elif isinstance(exchange.error, AuditUnavailable):
            m.audit_refusals.inc()
        if dep is not None:
            genai = (api.operation, provider, model)
            if exchange.first_byte_s is not None:
                m.ttft.observe(genai, exchange.first_byte_s)
            usage = exchange.usage
            if usage is not None:
                m.tokens.observe((*genai, "input"), usage.prompt_tokens)
                m.tokens.observe((*genai, "output"), usage.completion_tokens)
                if exchange.stream and usage.completion_tokens > 1 and exchange.first_byte_s:
                    per_token = (elapsed - exchange.first_byte_s) / (usage.completion_tokens - 1)
                    m.per_token.observe(genai, max(per_token, 0.0))
        if self._access_log and access.isEnabledFor(logging.INFO):
            usage = exchange.usage
            access.info(
                "request",
                extra={
                    "event": "request",
                    "request_id": exchange.request_id,
                    "decision_id": exchange.decision_id,
                    "tenant": exchange.principal.tenant,
                    "key_id": exchange.principal.key_id,
                    "api": exchange.api.value,
                    "model": exchange.model,
                    "stream": exchange.stream,
                    "decision": result,
                    "rule": rule or None,
                    "deployment": dep.id if dep else None,
                    "country": country or None,
                    "status": exchange.status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "first_byte_ms": (
                        round(exchange.first_byte_s * 1000, 2) if exchange.first_byte_s else None
                    ),
                    "attempts": len(exchange.attempts),
                    "prompt_tokens": usage.prompt_tokens if usage else None,
                    "completion_tokens": usage.completion_tokens if usage else None,
                    "error": exchange.error.code if exchange.error else None,
                },
            )
