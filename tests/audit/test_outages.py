"""The audit store failing under the writer: stalled (PostgreSQL behind a proxy that holds every
byte), and a volume with no room (SQLite on a small tmpfs). Nobody waits behind a stuck store, a
batch whose commit was not confirmed is settled before anything else is written, and the store is
declared back only once a real batch of records has committed."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.query import requests_of
from gateway.audit.setup import open_store
from gateway.audit.signing import Signer
from gateway.audit.store import Query
from gateway.audit.writer import AuditWriteFailed, AuditWriter
from tests.audit.sample_log import record
from tests.audit.test_log import SIGNER, _export, verify
from tests.faults.proxy import FaultProxy, Mode


def _through(store_url: str, port: int) -> str:
    return store_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")


async def _all(url: str) -> list[dict[str, Any]]:
    store = open_store(url)
    await store.open()
    try:
        return [orjson.loads(r.body) for r in await store.read(Query())]
    finally:
        await store.aclose()


async def _until(condition: Any, seconds: float) -> float:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, "the condition never held"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


@pytest.fixture
def pg_url(postgres: str) -> str:
    from tests.audit.conftest import _schema

    schema = "o_" + str(time.monotonic_ns())[-8:]
    asyncio.run(_schema(postgres, schema))
    return f"{postgres}?search_path={schema}"


def test_a_stalled_postgres_fails_fast_and_a_batch_that_lands_late_is_corrected(
    pg_url: str,
) -> None:
    with FaultProxy(5432).running() as proxy:
        url = _through(pg_url, proxy.port)

        async def scenario() -> None:
            writer = AuditWriter(
                open_store(url),
                SIGNER,
                "replica-a",
                checkpoint_interval_s=3600,
                commit_timeout_s=0.5,
                retry_max_s=0.2,
            )
            await writer.start()
            assert await writer.append(record(0, "alpha")) == 0
            proxy.mode = Mode("stall")  # accepts, holds every byte
            began = time.monotonic()
            results = await asyncio.gather(
                *(writer.append(record(i, "alpha")) for i in (1, 2, 3)), return_exceptions=True
            )
            assert all(isinstance(r, AuditWriteFailed) for r in results), results
            assert time.monotonic() - began < 2
            began = time.monotonic()
            with pytest.raises(AuditWriteFailed):  # refused at once: nobody waits
                await asyncio.wait_for(writer.append(record(4, "alpha")), 1)
            assert time.monotonic() - began < 0.1 and not writer.available
            await asyncio.sleep(1.0)
            assert not writer.accepting  # still stalled: not back
            proxy.mode = Mode()  # the held INSERT reaches the server now, late
            took = await _until(lambda: writer.accepting, 10)
            print(f"back {took:.2f} s after the store answered again")
            # the next batch does not collide with the late one
            assert await writer.append(record(5, "alpha")) == writer.size - 1
            await writer.stop()

        asyncio.run(scenario())
    found = asyncio.run(_all(pg_url))
    print([(r["seq"], r.get("kind"), r.get("request_id"), r.get("status")) for r in found])
    merged = {r["request_id"]: r for r in requests_of(found)}
    for i in (1, 2, 3, 4):  # each client got an error: no merged record says 200
        assert merged.get(f"req-{i}", {}).get("status") in (None, 503), merged.get(f"req-{i}")
    assert merged["req-0"]["status"] == 200 and merged["req-5"]["status"] == 200
    [outage] = [r for r in found if r.get("kind") == "outage"]
    assert outage["refused"] >= 1
    report = verify(asyncio.run(_export(pg_url)))
    assert report.ok, report.failures


@contextlib.contextmanager
def small_volume(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of its own size (this needs root; the test fails, never skips, without it)."""
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave_bytes: int) -> Path:
    """Fill `volume` until about `leave_bytes` are left; returns the filler to delete later."""
    import os

    filler = volume / "filler"
    with filler.open("wb") as out:
        while True:
            stat = os.statvfs(volume)
            free = stat.f_bavail * stat.f_frsize
            if free <= leave_bytes:
                break
            out.write(b"\0" * min(2**20, free - leave_bytes))
            out.flush()
    return filler


def test_sqlite_on_a_full_volume_is_not_declared_back_until_there_is_room(
    tmp_path: Path,
) -> None:
    with small_volume(tmp_path / "vol", 24) as volume:
        url = f"sqlite:{volume / 'audit.sqlite3'}"

        async def scenario() -> None:
            writer = AuditWriter(
                open_store(url),
                SIGNER,
                "replica-a",
                checkpoint_interval_s=0.1,  # a checkpoint would fit: it must not reopen the log
                commit_timeout_s=0.5,
                retry_max_s=0.2,
            )
            await writer.start()
            assert await writer.append(record(0, "alpha")) == 0
            filler = fill(volume, 2 * 2**20)
            with pytest.raises(AuditWriteFailed):
                await writer.append(record(1, "alpha"))
            for _ in range(20):  # two seconds of ticks and retries
                await asyncio.sleep(0.1)
                assert not writer.accepting, "declared back while the volume is still full"
                with pytest.raises(AuditWriteFailed):
                    await writer.append(record(2, "alpha"))
            filler.unlink()
            took = await _until(lambda: writer.accepting, 10)
            print(f"back {took:.2f} s after room was made")
            assert await writer.append(record(3, "alpha")) == writer.size - 1
            await writer.stop()

        asyncio.run(scenario())
        found = asyncio.run(_all(url))
        assert [r.get("request_id") for r in found if r.get("kind") != "outage"] == [
            "req-0",
            "req-3",
        ]
        report = verify(asyncio.run(_export(url)))
        assert report.ok, report.failures


# ---- behind a running gateway -------------------------------------------------------------------


def test_with_postgres_stalled_every_client_gets_503_in_bounded_time_and_nothing_is_forwarded(
    pg_url: str, tmp_path: Path
) -> None:
    import httpx

    from gateway.dev.demo import demo_key
    from tests.harness import PolicyDir, Sim, run_gateway, run_simulators

    policies = PolicyDir.from_examples(tmp_path / "policies")
    with (
        FaultProxy(5432).running() as proxy,
        run_simulators(policies.path, tmp_path / "sim.log"),
        run_gateway(
            policies.path,
            tmp_path / "gw.log",
            audit_store=_through(pg_url, proxy.port),
            log_level="warning",
        ) as gw,
    ):
        sims = [Sim(policies.ports[n]) for n in ("vllm-paris", "vllm-frankfurt")]

        def received() -> int:
            return sum(int(s.state()["received"]) for s in sims)

        async def ask(client: httpx.AsyncClient, model: str) -> tuple[int, str, float]:
            began = time.monotonic()
            r = await client.post(
                gw.v1 + "/chat/completions",
                headers={"authorization": f"Bearer {demo_key('fr-public-body')}"},
                json={"model": model, "messages": [{"role": "user", "content": "x"}]},
            )
            code = r.json()["error"]["code"] if r.status_code != 200 else ""
            return r.status_code, code or "", time.monotonic() - began

        async def round_(n: int) -> list[tuple[int, str, float]]:
            async with httpx.AsyncClient(timeout=30) as client:
                # mistral-small runs in France; gpt-4o is refused (403) for this tenant
                models = ["mistral-small", "gpt-4o"] * (n // 2)
                return await asyncio.gather(*(ask(client, m) for m in models))

        assert {s for s, _, _ in asyncio.run(round_(4))} == {200, 403}
        proxy.mode = Mode("stall")
        first = asyncio.run(round_(32))  # the requests that find the store stalling
        before = received()
        later = asyncio.run(round_(32))
        forwarded = received() - before
        print(
            f"stalled: first round {sorted({s for s, _, _ in first})} in at most"
            f" {max(t for _, _, t in first):.2f} s; then {sorted({s for s, _, _ in later})}"
            f" in at most {max(t for _, _, t in later):.2f} s, {forwarded} forwarded"
        )
        assert all(s == 503 and c == "audit_unavailable" for s, c, _ in later), later
        assert forwarded == 0
        assert max(t for _, _, t in first) < 4 and max(t for _, _, t in later) < 2
        assert all(s in (200, 403, 503) for s, _, _ in first)
        proxy.mode = Mode()
        began = time.monotonic()
        while {s for s, _, _ in asyncio.run(round_(2))} != {200, 403}:
            assert time.monotonic() - began < 10, "the gateway did not notice the store is back"
            time.sleep(0.2)
        print(f"back {time.monotonic() - began:.2f} s after the store answered again")

        # refused: connections are retried with backoff, and the log stays readable
        log_lines = len(gw.log.read_text().splitlines())
        proxy.mode = Mode("refuse")
        connections = proxy.accepted
        answered: list[tuple[int, str, float]] = []
        began = time.monotonic()
        while time.monotonic() - began < 4:
            answered += asyncio.run(round_(16))
        attempts = proxy.accepted - connections
        lines = gw.log.read_text().splitlines()[log_lines:]
        print(
            f"refused for 4 s: {len(answered)} answered, {attempts} connection attempts,"
            f" {len(lines)} log lines"
        )
        assert len(answered) >= 100 and {s for s, _, _ in answered[16:]} == {503}
        assert attempts <= 20, attempts
        assert len(lines) <= 10, "\n".join(lines[:20])
        proxy.mode = Mode()
    found = asyncio.run(_all(pg_url))
    merged = requests_of(found)
    statuses = {r["status"] for r in merged}
    assert statuses <= {200, 403, 503}
    key = Signer.from_file(tmp_path / "gw.signing-key.pem").public_key
    report = verify(asyncio.run(_export(pg_url, log_id=found[0]["log_id"])), key)
    assert report.ok, report.failures
