"""Counters in Redis, shared by every replica: one EVALSHA per request on the hot path.

`admit` runs one Lua script (loaded once, by its SHA; loaded again if Redis forgot it) that checks
every limit of a request and moves all its counters or none. `settle` queues the request's
corrections, which a background task sends in pipelines, off the request path. Every call has a
short deadline: a store that does not answer in time is an error, never a wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.limits.checks import Check, Kind, Verdict, seconds_to_next_month
from gateway.limits.scripts import ADMIT, SETTLE
from gateway.limits.store import LimitStoreError

log = logging.getLogger("gateway.limits")
KINDS = {Kind.REQUESTS: "r", Kind.TOKENS: "r", Kind.CONCURRENT: "c", Kind.MONTH: "m"}
MONTH_GRACE_S = 7 * 86400  # a month's counter outlives its month by this, then expires
SETTLE_BATCH = 256
SETTLE_TRIES = 10  # a settlement that failed this often is dropped: its slot waits for its lease
SETTLE_RETRY_S = 1.0
# what a call to Redis raises when Redis cannot answer; uvloop raises RuntimeError on a write to a
# connection that the peer has just reset
STORE_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)


@dataclass(slots=True)
class _Settlement:
    checks: list[Check]
    holder: str
    used_tokens: int
    tries: int = 0


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


class RedisStore:
    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        timeout_s: float,
        lease_s: float,
        on_error: Callable[[str], None],
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._lease_ms = str(math.ceil(lease_s * 1000))
        self._on_error = on_error
        self._now = now
        self._pending: list[_Settlement] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._load()
        except LimitStoreError as exc:  # the gateway starts; requests wait for the store
            log.error("the limits store cannot be reached at start-up: %s", exc)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._pending:
            await self._flush()
        await self._redis.aclose()

    async def admit(self, checks: list[Check], holder: str) -> Verdict:
        keys, args = self._arguments(checks, holder, [c.cost for c in checks])
        reply = await self._eval(ADMIT, keys, args)
        refused, wait_ms = int(reply[0]), int(reply[1])
        values = [int(v) for v in reply[2:]]
        return Verdict(
            admitted=refused == 0,
            refused_by=refused - 1,
            retry_after_s=wait_ms / 1000 if wait_ms >= 0 else math.inf,
            remaining=tuple(values[0::2]),
            reset_s=tuple(v / 1000 for v in values[1::2]),
        )

    def settle(self, checks: list[Check], holder: str, used_tokens: int) -> None:
        self._pending.append(_Settlement(checks, holder, used_tokens))
        self._wake.set()

    def _arguments(
        self, checks: list[Check], holder: str, amounts: list[int]
    ) -> tuple[list[str], list[str]]:
        month_ms = str(math.ceil((seconds_to_next_month(self._now()) + MONTH_GRACE_S) * 1000))
        keys = [self._prefix + c.key for c in checks]
        args = [self._lease_ms, holder]
        for check, amount in zip(checks, amounts, strict=True):
            args += [KINDS[check.kind], str(check.limit), str(amount), month_ms]
        return keys, args

    async def _eval(self, script: str, keys: list[str], args: list[str]) -> list[int]:
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    reply = await self._redis.evalsha(_sha(script), len(keys), *keys, *args)
                except NoScriptError:  # Redis restarted or flushed its scripts
                    await self._redis.script_load(script)
                    reply = await self._redis.evalsha(_sha(script), len(keys), *keys, *args)
        except STORE_ERRORS as exc:
            self._on_error("admit")
            raise LimitStoreError(_describe(exc)) from exc
        return list(reply)

    async def _load(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s * 4):
                for script in (ADMIT, SETTLE):
                    await self._redis.script_load(script)
        except STORE_ERRORS as exc:
            raise LimitStoreError(_describe(exc)) from exc

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not await self._flush():
                    await asyncio.sleep(SETTLE_RETRY_S)

    async def _flush(self) -> bool:
        """Send one batch; on failure keep it for a later try (a few), and say False."""
        batch, self._pending = self._pending[:SETTLE_BATCH], self._pending[SETTLE_BATCH:]
        try:
            async with asyncio.timeout(self._timeout_s * 4):
                try:
                    await self._settle_pipeline(batch).execute()
                except NoScriptError:
                    await self._redis.script_load(SETTLE)
                    await self._settle_pipeline(batch).execute()
        except STORE_ERRORS as exc:
            # slots free themselves when their lease ends; the estimates stay charged
            self._on_error("settle")
            log.warning("could not settle %d requests' limits: %s", len(batch), _describe(exc))
            for item in batch:
                item.tries += 1
            self._pending[:0] = [item for item in batch if item.tries < SETTLE_TRIES]
            return False
        return True

    def _settle_pipeline(self, batch: list[_Settlement]) -> Pipeline:
        pipe = self._redis.pipeline(transaction=False)
        for item in batch:
            settled = [c for c in item.checks if c.kind is not Kind.REQUESTS]
            if settled:
                back = [c.cost - item.used_tokens for c in settled]
                keys, args = self._arguments(settled, item.holder, back)
                pipe.evalsha(_sha(SETTLE), len(keys), *keys, *args)
        return pipe


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"
