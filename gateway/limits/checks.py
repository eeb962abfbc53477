"""What one request is checked against: the tenant's and the key's limits as a list of `Check`s,
its token estimate, the cap on `max_tokens`, and the `x-ratelimit-*` headers of a verdict.

Pure: no I/O, no clock. The stores (memory, Redis) only apply the checks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.errors import MaxTokensExceeded
from gateway.policy.apis import API, Api
from gateway.policy.schema import KeyLimits, Limits

BYTES_PER_TOKEN = 4  # a prompt's estimate: its request's bytes over this (English text, BPE)


class Kind(StrEnum):
    REQUESTS = "requests_per_minute"
    TOKENS = "tokens_per_minute"
    CONCURRENT = "concurrent_requests"
    MONTH = "tokens_per_month"


@dataclass(frozen=True, slots=True)
class Check:
    """One limit one request counts against. `key` names its counter: kind, scope and, for the
    month budget, the month (`tokens_per_month:tenant:acme:2026-12`)."""

    kind: Kind
    key: str
    limit: int
    cost: int
    scope: str = "tenant"  # or "key"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A store's answer: admitted or not, which check refused and when to retry, and per check
    what remains and when the counter is whole again."""

    admitted: bool
    refused_by: int
    retry_after_s: float
    remaining: tuple[int, ...]
    reset_s: tuple[float, ...]


def checks_for(
    limits: Limits, tenant: str, key_id: str, estimate: int, now: dt.datetime
) -> list[Check]:
    """The tenant's checks, then the key's (when `limits.keys` names it)."""
    found = _scope(limits, "tenant", tenant, estimate, now)
    per_key = limits.keys.get(key_id)
    if per_key is not None:
        found += _scope(per_key, "key", key_id, estimate, now)
    return found


def _scope(
    limits: KeyLimits, scope: str, name: str, estimate: int, now: dt.datetime
) -> list[Check]:
    where = f"{scope}:{name}"
    found: list[Check] = []
    if limits.requests_per_minute is not None:
        found.append(Check(Kind.REQUESTS, f"rpm:{where}", limits.requests_per_minute, 1, scope))
    if limits.tokens_per_minute is not None:
        found.append(Check(Kind.TOKENS, f"tpm:{where}", limits.tokens_per_minute, estimate, scope))
    if limits.concurrent_requests is not None:
        limit = limits.concurrent_requests
        found.append(Check(Kind.CONCURRENT, f"concurrent:{where}", limit, 1, scope))
    if limits.tokens_per_month is not None:
        month = f"month:{where}:{now:%Y-%m}"
        found.append(Check(Kind.MONTH, month, limits.tokens_per_month, estimate, scope))
    return found


def max_tokens_cap(limits: Limits, key_id: str) -> int | None:
    caps = [limits.max_tokens]
    per_key = limits.keys.get(key_id)
    if per_key is not None:
        caps.append(per_key.max_tokens)
    present = [c for c in caps if c is not None]
    return min(present) if present else None


def output_estimate(api: Api, data: dict[str, Any], cap: int | None) -> int:
    """The completion tokens a request may produce; raises when it asks for more than `cap`, and
    sets `cap` as its limit when it names none (so a client cannot leave the field out to pass)."""
    fields = API[api].output_fields
    if not fields:
        return 0
    asked: int | None = None
    for name in fields:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            if cap is not None and value > cap:
                raise MaxTokensExceeded(
                    f"{name} is {value}, above this key's limit of {cap}", param=name
                )
            asked = value if asked is None else max(asked, value)
    if asked is None and cap is not None:
        data[fields[-1]] = cap
        asked = cap
    choices = data.get("n")
    n = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 0 else 1
    return (asked or 0) * n


def prompt_estimate(body_bytes: int) -> int:
    return body_bytes // BYTES_PER_TOKEN + 1


def seconds_to_next_month(now: dt.datetime) -> float:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return (following - now).total_seconds()


def rate_headers(checks: list[Check], verdict: Verdict) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the tightest requests and tokens limits."""
    headers: dict[str, str] = {}
    for kind, suffix in ((Kind.REQUESTS, "requests"), (Kind.TOKENS, "tokens")):
        tightest: int | None = None
        for i, check in enumerate(checks):
            if check.kind is kind and (
                tightest is None or verdict.remaining[i] < verdict.remaining[tightest]
            ):
                tightest = i
        if tightest is None:
            continue
        headers[f"x-ratelimit-limit-{suffix}"] = str(checks[tightest].limit)
        headers[f"x-ratelimit-remaining-{suffix}"] = str(max(0, verdict.remaining[tightest]))
        headers[f"x-ratelimit-reset-{suffix}"] = duration(verdict.reset_s[tightest])
    return headers


def duration(seconds: float) -> str:
    """A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"
