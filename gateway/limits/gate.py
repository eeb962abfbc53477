"""`Limits`: the request path's one entry to limits and budgets. `admit` before anything else is
done for a request (every authenticated request counts, refused or invalid), `settle` once it
has ended, whatever way it ended.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.auth.keys import Principal
from gateway.errors import (
    LimitsUnavailable,
    MaxTokensExceeded,
    QuotaExhausted,
    RateLimited,
)
from gateway.limits.checks import (
    Check,
    Kind,
    checks_for,
    max_tokens_cap,
    output_estimate,
    prompt_estimate,
    rate_headers,
    seconds_to_next_month,
)
from gateway.limits.store import LimitStore, LimitStoreError
from gateway.policy.apis import Api
from gateway.policy.compile import CompiledPolicy

log = logging.getLogger("gateway.limits")
MESSAGES = {
    Kind.REQUESTS: "Rate limit of {limit} requests per minute reached for this {scope}",
    Kind.TOKENS: "Rate limit of {limit} tokens per minute reached for this {scope}"
    " (this request is estimated at {cost} tokens)",
    Kind.CONCURRENT: "Limit of {limit} concurrent requests reached for this {scope}",
    Kind.MONTH: "The token budget of {limit} tokens for this month is spent for this {scope}"
    " (this request is estimated at {cost} tokens); it renews on the 1st (UTC)",
}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class Admission:
    """A request let in: what it counted against, and the headers its answer carries."""

    checks: list[Check]
    holder: str
    estimate: int
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class Limits:
    def __init__(
        self,
        store: LimitStore,
        fail_open: bool,
        on_fail_open: Callable[[], None],
        now: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.store = store
        self._fail_open = fail_open
        self._on_fail_open = on_fail_open
        self._now = now
        self._store_down = False

    async def admit(
        self,
        principal: Principal,
        compiled: CompiledPolicy,
        api: Api,
        data: dict[str, Any] | None,
        body_bytes: int,
        holder: str,
    ) -> Admission | None:
        """Count the request; raises `RateLimited`, `MaxTokensExceeded` or `LimitsUnavailable`.
        `data` is the parsed body (None when it does not parse: it counts all the same)."""
        tenant = compiled.policy.tenants.get(principal.tenant)
        if tenant is None:
            return None
        limits = tenant.limits
        over_cap: MaxTokensExceeded | None = None
        output = 0
        if data is not None:
            try:
                output = output_estimate(api, data, max_tokens_cap(limits, principal.key_id))
            except MaxTokensExceeded as exc:
                over_cap = exc
        estimate = prompt_estimate(body_bytes) + output
        now = self._now()
        checks = checks_for(limits, principal.tenant, principal.key_id, estimate, now)
        if not checks and over_cap is None:
            return None
        try:
            verdict = await self.store.admit(checks, holder)
        except LimitStoreError as exc:
            self._store_failed(exc)
            return None
        if self._store_down:
            self._store_down = False
            log.warning("the limits store answers again", extra={"event": "limits_store_up"})
        headers = rate_headers(checks, verdict)
        if not verdict.admitted:
            raise _refusal(checks[verdict.refused_by], verdict.retry_after_s, headers, now)
        admission = Admission(checks, holder, estimate, headers)
        if over_cap is not None:
            self.settle(admission, 0)
            raise over_cap
        return admission

    def settle(self, admission: Admission | None, used_tokens: int | None) -> None:
        """Give back the request's slot and charge `used_tokens` in place of the estimate
        (None: the usage is unknown, the estimate stands). Safe to call more than once."""
        if admission is None or admission.settled:
            return
        admission.settled = True
        used = admission.estimate if used_tokens is None else used_tokens
        self.store.settle(admission.checks, admission.holder, used)

    def _store_failed(self, exc: LimitStoreError) -> None:
        if not self._store_down:
            self._store_down = True
            log.error(
                "the limits store cannot be reached: %s; requests are %s",
                exc,
                "let through UNLIMITED (limits_fail_open)" if self._fail_open else "refused (503)",
                extra={"event": "limits_store_down"},
            )
        if self._fail_open:
            self._on_fail_open()
            return
        raise LimitsUnavailable(
            "Limits cannot be checked right now (the limits store is unreachable); retry shortly"
        ) from exc


def _refusal(
    check: Check, retry_after: float, headers: dict[str, str], now: dt.datetime
) -> RateLimited:
    message = MESSAGES[check.kind].format(limit=check.limit, cost=check.cost, scope=check.scope)
    if check.kind is Kind.MONTH:
        wait = seconds_to_next_month(now)
        return QuotaExhausted(message, retry_after=wait, limit_kind=check.kind, headers=headers)
    wait = retry_after if math.isfinite(retry_after) else 60.0
    return RateLimited(message, retry_after=wait, limit_kind=check.kind, headers=headers)
