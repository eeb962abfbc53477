"""Counters in this process's memory: the default, for one process.

Each process counts alone, so N processes allow N times every limit, and the month's budget
starts again from zero when the process restarts. Use `limits_store: redis://...` beyond one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.limits.checks import Check, Kind, Verdict

MINUTE_S = 60.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class MemoryStore:
    def __init__(self, lease_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lease_s = lease_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._held: dict[str, dict[str, float]] = {}  # slot holders and when their lease ends
        self._used: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def admit(self, checks: list[Check], holder: str) -> Verdict:
        now = self._clock()
        remaining: list[int] = []
        resets: list[float] = []
        refused_by, retry_after = -1, 0.0
        for i, check in enumerate(checks):
            left, reset, wait = self._look(check, now)
            remaining.append(left)
            resets.append(reset)
            if wait > 0 and refused_by < 0:
                refused_by, retry_after = i, wait
        if refused_by < 0:
            for i, check in enumerate(checks):
                remaining[i], resets[i] = self._take(check, holder, now)
        return Verdict(refused_by < 0, refused_by, retry_after, tuple(remaining), tuple(resets))

    def _look(self, check: Check, now: float) -> tuple[int, float, float]:
        """(remaining, seconds to whole, seconds to wait: 0 when it admits) before taking."""
        if check.kind in (Kind.REQUESTS, Kind.TOKENS):
            rate = check.limit / MINUTE_S
            tokens = self._refill(check, now).tokens
            need = min(check.cost, check.limit)
            wait = 0.0 if tokens >= need else (need - tokens) / rate
            return math.floor(tokens), (check.limit - tokens) / rate, wait
        if check.kind is Kind.CONCURRENT:
            held = self._holders(check.key, now)
            free = check.limit - len(held)
            return free, 0.0, 0.0 if free > 0 else 1.0
        used = self._used.get(check.key, 0)
        return check.limit - used, 0.0, 0.0 if used + check.cost <= check.limit else math.inf

    def _take(self, check: Check, holder: str, now: float) -> tuple[int, float]:
        if check.kind in (Kind.REQUESTS, Kind.TOKENS):
            bucket = self._buckets[check.key]
            bucket.tokens -= check.cost
            rate = check.limit / MINUTE_S
            return math.floor(bucket.tokens), (check.limit - bucket.tokens) / rate
        if check.kind is Kind.CONCURRENT:
            held = self._holders(check.key, now)
            held[holder] = now + self._lease_s
            return check.limit - len(held), 0.0
        used = self._used[check.key] = self._used.get(check.key, 0) + check.cost
        return check.limit - used, 0.0

    def settle(self, checks: list[Check], holder: str, used_tokens: int) -> None:
        now = self._clock()
        for check in checks:
            if check.kind is Kind.TOKENS:
                bucket = self._refill(check, now)
                bucket.tokens = min(float(check.limit), bucket.tokens + check.cost - used_tokens)
            elif check.kind is Kind.CONCURRENT:
                self._holders(check.key, now).pop(holder, None)
            elif check.kind is Kind.MONTH:
                used = self._used.get(check.key, 0) + used_tokens - check.cost
                self._used[check.key] = max(0, used)

    def _refill(self, check: Check, now: float) -> _Bucket:
        bucket = self._buckets.get(check.key)
        if bucket is None:
            bucket = self._buckets[check.key] = _Bucket(float(check.limit), now)
        rate = check.limit / MINUTE_S
        bucket.tokens = min(float(check.limit), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def _holders(self, key: str, now: float) -> dict[str, float]:
        held = self._held.setdefault(key, {})
        for expired in [h for h, until in held.items() if until <= now]:
            del held[expired]
        return held
