"""The memory store and the Redis store's Lua scripts, through a real Redis, on the same cases."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.limits.checks import Check, Kind
from gateway.limits.memory import MemoryStore
from gateway.limits.redis import RedisStore
from gateway.limits.store import LimitStore, LimitStoreError
from tests.limits.stores import REDIS_URL, RedisProxy, random_prefix

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def rpm(limit: int) -> Check:
    return Check(Kind.REQUESTS, "rpm:tenant:t", limit, 1)


def tpm(limit: int, cost: int) -> Check:
    return Check(Kind.TOKENS, "tpm:tenant:t", limit, cost)


def concurrent(limit: int) -> Check:
    return Check(Kind.CONCURRENT, "concurrent:tenant:t", limit, 1)


def month(limit: int, cost: int) -> Check:
    return Check(Kind.MONTH, "month:tenant:t:2026-12", limit, cost)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    if request.param == "memory":
        yield MemoryStore(lease_s=60)
        return
    found = RedisStore(
        url=REDIS_URL,
        prefix=random_prefix(),
        timeout_s=0.5,
        lease_s=60,
        on_error=lambda _: None,
        now=lambda: NOW,
    )
    await found.start()
    yield found
    await found.aclose()


async def settled(store: LimitStore) -> None:
    """Redis settles in the background: wait until the queue is sent."""
    for _ in range(100):
        if not getattr(store, "_pending", None):
            await asyncio.sleep(0.02)
            return
        await asyncio.sleep(0.01)


async def test_requests_per_minute(store: LimitStore) -> None:
    verdicts = [await store.admit([rpm(3)], f"r{i}") for i in range(4)]
    assert [v.admitted for v in verdicts] == [True, True, True, False]
    assert verdicts[2].remaining == (0,)
    assert 19 < verdicts[3].retry_after_s <= 20.5  # one request comes back every 20 s
    assert 59 < verdicts[2].reset_s[0] <= 60.5  # all three, in 60 s


async def test_tokens_are_reconciled_with_the_real_usage(store: LimitStore) -> None:
    assert (await store.admit([tpm(100, 60)], "a")).admitted
    assert not (await store.admit([tpm(100, 60)], "b")).admitted
    store.settle([tpm(100, 60)], "a", 10)  # it used 10 of the 60 estimated
    await settled(store)
    assert (await store.admit([tpm(100, 60)], "c")).admitted


async def test_a_request_larger_than_the_limit_waits_for_a_full_bucket(store: LimitStore) -> None:
    assert (await store.admit([tpm(100, 500)], "a")).admitted  # the bucket goes into debt
    late = await store.admit([tpm(100, 1)], "b")
    assert not late.admitted and late.retry_after_s > 200


async def test_concurrent_slots_are_given_back(store: LimitStore) -> None:
    assert (await store.admit([concurrent(2)], "a")).admitted
    assert (await store.admit([concurrent(2)], "b")).admitted
    assert not (await store.admit([concurrent(2)], "c")).admitted
    store.settle([concurrent(2)], "a", 0)
    await settled(store)
    assert (await store.admit([concurrent(2)], "c")).admitted


async def test_the_month_budget(store: LimitStore) -> None:
    assert (await store.admit([month(100, 80)], "a")).admitted
    refused = await store.admit([month(100, 30)], "b")
    assert not refused.admitted and refused.remaining == (20,)
    store.settle([month(100, 80)], "a", 20)
    await settled(store)
    assert (await store.admit([month(100, 30)], "b")).admitted


async def test_all_counters_move_or_none(store: LimitStore) -> None:
    assert (await store.admit([rpm(10), concurrent(1)], "a")).admitted
    refused = await store.admit([rpm(10), concurrent(1)], "b")
    assert not refused.admitted and refused.refused_by == 1
    assert (await store.admit([rpm(10)], "c")).remaining == (8,)  # b took no request


async def test_every_redis_key_expires_by_itself() -> None:
    prefix = random_prefix()
    store = RedisStore(
        url=REDIS_URL,
        prefix=prefix,
        timeout_s=0.5,
        lease_s=60,
        on_error=lambda _: None,
        now=lambda: NOW,
    )
    await store.start()
    try:
        assert await store.admit([rpm(5), tpm(100, 7), concurrent(2), month(10**6, 7)], "a")
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        assert len(keys) == 4
        ttls = [await client.pttl(k) for k in keys]
        await client.aclose()
        assert all(0 < t <= 40 * 86400 * 1000 for t in ttls), ttls
    finally:
        await store.aclose()


async def test_a_stalled_or_refusing_redis_is_an_error_in_bounded_time_then_recovers() -> None:
    errors: list[str] = []
    with RedisProxy().running() as proxy:
        store = RedisStore(
            url=proxy.url,
            prefix=random_prefix(),
            timeout_s=0.25,
            lease_s=60,
            on_error=errors.append,
            now=lambda: NOW,
        )
        await store.start()
        try:
            assert (await store.admit([rpm(100)], "a")).admitted
            for mode in ("stall", "refuse"):
                proxy.set(mode)
                began = time.monotonic()
                with pytest.raises(LimitStoreError):
                    await store.admit([rpm(100)], "b")
                assert time.monotonic() - began < 1.0
                proxy.set("pass")
                assert (await store.admit([rpm(100)], "c")).admitted
        finally:
            await store.aclose()
    assert errors == ["admit", "admit"]


async def test_a_slot_settled_while_redis_refuses_is_given_back_when_it_returns() -> None:
    with RedisProxy().running() as proxy:
        store = RedisStore(
            url=proxy.url,
            prefix=random_prefix(),
            timeout_s=0.25,
            lease_s=600,
            on_error=lambda _: None,
            now=lambda: NOW,
        )
        await store.start()
        try:
            assert (await store.admit([concurrent(1)], "a")).admitted
            proxy.set("refuse")
            store.settle([concurrent(1)], "a", 0)
            await asyncio.sleep(0.3)  # the first try fails
            proxy.set("pass")
            for _ in range(40):
                await asyncio.sleep(0.1)
                if (await store.admit([concurrent(1)], "b")).admitted:
                    break
            else:
                pytest.fail("the slot was never given back")
        finally:
            await store.aclose()
