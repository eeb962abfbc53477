"""Token buckets in this process's memory: the default for a single replica."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class MemoryLimiter:
    """`check(tenant, per_minute, now)` spends one token or raises `RateLimited`."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str, per_minute: int, now: float, cost: float = 1.0) -> None:
        rate = per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(per_minute), now)
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return
        wait = (cost - bucket.tokens) / rate
        raise RateLimited(
            f"Rate limit of {per_minute} requests per minute reached for this tenant",
            retry_after=wait,
        )
