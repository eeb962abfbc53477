"""The audit log on both stores: group commit, export, offline verification and every way an
export can be tampered with, tenant exports with inclusion proofs, pruning."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.canonical import NotCanonical, canonical
from gateway.audit.export import export_log, export_tenant
from gateway.audit.setup import open_store
from gateway.audit.signing import Checkpoint, Signer, public_key_pem
from gateway.audit.store import Query, StoredRecord, StoreUnavailable
from gateway.audit.verify import Report, verify_export
from gateway.audit.writer import AuditWriteFailed, AuditWriter
from tests.audit.sample_log import record
from tests.harness import sovereign_gateway

SIGNER = Signer(Ed25519PrivateKey.generate())


async def _fill(
    url: str, n: int, log_id: str = "replica-a", every: int = 5, sequential: bool = True
) -> list[int]:
    writer = AuditWriter(
        open_store(url), SIGNER, log_id, checkpoint_every=every, checkpoint_interval_s=3600
    )
    await writer.start()
    try:
        if sequential:  # one batch per record, so checkpoints fall every `every` records
            return [await writer.append(record(i, ("alpha", "beta")[i % 2])) for i in range(n)]
        # concurrent appends share batches (group commit)
        return list(
            await asyncio.gather(
                *(writer.append(record(i, ("alpha", "beta")[i % 2])) for i in range(n))
            )
        )
    finally:
        await writer.stop()


async def _export(url: str, log_id: str = "replica-a", tenant: str | None = None) -> list[bytes]:
    store = open_store(url)
    await store.open()
    try:
        if tenant:
            lines = await export_tenant(
                store, log_id, tenant, SIGNER, "2026-12-01T00:00:00.000000Z"
            )
            return [line.rstrip(b"\n") for line in lines]
        return [line.rstrip(b"\n") for line in await export_log(store, log_id)]
    finally:
        await store.aclose()


def verify(lines: list[bytes], key: Any = None, held: list[Checkpoint] | None = None) -> Report:
    return verify_export(lines, key or SIGNER.public_key, held)


def kinds(report: Report) -> list[str]:
    return [f.kind for f in report.failures]


def record_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if b'"type":"record"' in line]


def test_group_commit_numbers_records_without_gaps_and_the_export_verifies(store_url: str) -> None:
    seqs = asyncio.run(_fill(store_url, 23, sequential=False))
    assert sorted(seqs) == list(range(23))
    lines = asyncio.run(_export(store_url))
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 23
    # checkpoints at the start and at the stop (23 concurrent appends share one batch)
    sizes = [orjson.loads(x)["checkpoint"]["size"] for x in lines if b"checkpoint" in x[:30]]
    assert {0, 23} <= set(sizes)
    assert report.notes == []


def test_a_restart_continues_the_same_tree(store_url: str) -> None:
    asyncio.run(_fill(store_url, 7))
    assert asyncio.run(_fill(store_url, 4)) == [7, 8, 9, 10]
    report = verify(asyncio.run(_export(store_url)))
    assert report.ok and report.records == 11


def test_each_kind_of_tampering_is_named(store_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(store_url, 12))
    lines = asyncio.run(_export(store_url))
    records = record_lines(lines)

    edited = list(lines)
    edited[records[3]] = edited[records[3]].replace(b'"status":200', b'"status":201')
    report = verify(edited)
    assert kinds(report) == ["edited"]
    assert "records seq 0 to 4 do not hash to the signed root" in str(report.failures[0])

    deleted = [x for i, x in enumerate(lines) if i != records[6]]
    assert kinds(verify(deleted)) == ["deleted"]
    assert "record seq 6 is missing" in str(verify(deleted).failures[0])

    reordered = list(lines)
    reordered[records[1]], reordered[records[2]] = reordered[records[2]], reordered[records[1]]
    assert "reordered" in kinds(verify(reordered))

    duplicated = [*lines[: records[8] + 1], lines[records[8]], *lines[records[8] + 1 :]]
    assert kinds(verify(duplicated)) == ["duplicated"]

    final = Checkpoint.from_json(orjson.loads(lines[-1])["checkpoint"])
    assert final.size == 12
    truncated = lines[: records[10]]  # the tail after the checkpoint of size 10 is gone
    assert verify(truncated).ok  # alone, a tail cut at a checkpoint looks like an older log...
    report = verify(truncated, held=[final])  # ...but not to an auditor who holds a checkpoint
    assert kinds(report) == ["truncated"]
    assert "ends at 10 records, but you hold a checkpoint of size 12" in str(report.failures[0])
    # cut between checkpoints, the records after the last one are vouched for by nothing
    assert kinds(verify(lines[: records[9]])) == ["unsigned"]

    other = Ed25519PrivateKey.generate().public_key()
    assert set(kinds(verify(lines, key=other))) == {"wrong_key"}

    forged = list(lines)
    cp_line = next(i for i, x in enumerate(forged) if b'"size":10' in x)
    cp = orjson.loads(forged[cp_line])
    cp["checkpoint"]["root"] = "00" * 32
    forged[cp_line] = orjson.dumps(cp)
    assert kinds(verify(forged)) == ["bad_signature", "edited"] or "bad_signature" in kinds(
        verify(forged)
    )


def test_the_cli_verifies_and_reports_failure_by_exit_code(store_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(store_url, 6))
    export = tmp_path / "log.jsonl"
    done = sovereign_gateway("audit", "export", "--store", store_url, "--out", export)
    assert done.returncode == 0, done.stderr
    key = tmp_path / "pub.pem"
    key.write_bytes(public_key_pem(SIGNER.public_key))
    ok = sovereign_gateway("audit", "verify", export, "--public-key", key)
    assert ok.returncode == 0 and "verified: 6 records" in ok.stdout
    export.write_bytes(export.read_bytes().replace(b'"status":200', b'"status":500', 1))
    bad = sovereign_gateway("audit", "verify", export, "--public-key", key)
    assert bad.returncode == 1
    assert "FAIL edited: records seq 0 to 4 do not hash to the signed root" in bad.stdout


def test_a_tenant_export_proves_its_records_and_shows_no_one_else(store_url: str) -> None:
    asyncio.run(_fill(store_url, 15))
    lines = asyncio.run(_export(store_url, tenant="alpha"))
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 8  # seq 0, 2, ..., 14
    assert not any(b'"tenant":"beta"' in x for x in lines)
    edited = [x.replace(b'"req-4"', b'"req-X"') for x in lines]
    report = verify(edited)
    assert kinds(report) == ["edited"]
    assert "record seq 4 is not included in the signed tree of size 15" in str(report.failures[0])


def test_prune_removes_whole_epochs_and_the_rest_still_verifies(store_url: str) -> None:
    asyncio.run(_fill(store_url, 12))
    # checkpoints carry the time they were signed (now), so prune everything before tomorrow
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    done = sovereign_gateway("audit", "prune", "--store", store_url, "--before", tomorrow)
    assert done.returncode == 0, done.stderr
    assert "removed 12 record(s) below 12; checkpoints kept" in done.stdout
    asyncio.run(_fill(store_url, 3))
    lines = asyncio.run(_export(store_url))
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 3
    # a tenant's remaining records are still proved against the latest signed root
    lines = asyncio.run(_export(store_url, tenant="alpha"))
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 2  # seq 12 and 14
    assert not any(b'"tenant":"beta"' in x for x in lines)
    assert kinds(verify([x.replace(b'"req-2"', b'"req-X"') for x in lines])) == ["edited"]

    async def remaining() -> list[int]:
        store = open_store(store_url)
        await store.open()
        try:
            return [r.seq for r in await store.read(Query())]
        finally:
            await store.aclose()

    assert asyncio.run(remaining()) == [12, 13, 14]


def test_canonical_json_is_sorted_compact_and_refuses_floats() -> None:
    assert canonical({"b": [1, "x"], "a": {"d": None, "c": True}}) == (
        b'{"a":{"c":true,"d":null},"b":[1,"x"]}'
    )
    with pytest.raises(NotCanonical):
        canonical({"duration": 1.5})
    with pytest.raises(NotCanonical):
        canonical({"nested": [{1: "x"}]})


def test_a_commit_that_hangs_fails_its_batch_and_stops_the_writer_until_it_recovers(
    store_url: str,
) -> None:
    """A batch blocked behind another session's table lock (PostgreSQL) or write lock (SQLite)
    fails after the commit timeout, with every request in it; once the lock goes, the writer
    takes records again and the log still verifies."""

    async def scenario() -> None:
        writer = AuditWriter(
            open_store(store_url),
            SIGNER,
            "replica-a",
            checkpoint_interval_s=0.2,
            commit_timeout_s=0.5,
        )
        await writer.start()
        release = await _hold_write_lock(store_url)
        try:
            began = asyncio.get_running_loop().time()
            results = await asyncio.gather(
                *(writer.append(record(i, "alpha")) for i in range(3)), return_exceptions=True
            )
            waited = asyncio.get_running_loop().time() - began
            assert all(isinstance(r, AuditWriteFailed) for r in results), results
            assert 0.4 < waited < 5
            assert not writer.accepting
        finally:
            await release()
        for _ in range(100):
            if writer.accepting:
                break
            await asyncio.sleep(0.05)
        assert writer.accepting
        assert await writer.append(record(3, "alpha")) == writer.size - 1
        await writer.stop()

    asyncio.run(scenario())
    report = verify(asyncio.run(_export(store_url)))
    assert report.ok, report.failures


async def _hold_write_lock(store_url: str) -> Callable[[], Awaitable[None]]:
    """Take the audit table's write lock from another session; returns how to let it go."""
    if store_url.startswith("sqlite:"):
        db = sqlite3.connect(store_url.removeprefix("sqlite:"), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            db.execute("ROLLBACK")
            db.close()

        return release_sqlite
    dsn, _, search_path = store_url.partition("?search_path=")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": search_path})
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE")

    async def release_postgres() -> None:
        await transaction.rollback()
        await conn.close()

    return release_postgres


async def _busy_writer(path: Path, gather_s: float) -> AuditWriter:
    """A started writer whose last batch held two records, so it knows it is under load."""
    writer = AuditWriter(
        open_store(f"sqlite:{path}"),
        SIGNER,
        "replica-a",
        checkpoint_interval_s=3600,
        gather_s=gather_s,
    )
    await writer.start()
    await asyncio.gather(writer.append(record(0, "alpha")), writer.append(record(1, "alpha")))
    return writer


def test_under_load_a_batch_grows_while_each_turn_brings_records_and_no_longer(
    tmp_path: Path,
) -> None:
    """Records that arrive turn after turn of the event loop share one commit; a lone record
    after a quiet spell is committed at once, not after the gathering bound."""

    async def scenario() -> list[int]:
        writer = await _busy_writer(tmp_path / "audit.sqlite3", gather_s=5.0)
        try:

            async def one_per_turn() -> list[asyncio.Future[int]]:
                futures = []
                for i in range(2, 12):
                    futures.append(writer.append(record(i, "alpha")))
                    await asyncio.sleep(0)
                return futures

            await asyncio.gather(*await one_per_turn())
            began = asyncio.get_running_loop().time()
            await writer.append(record(12, "alpha"))
            assert asyncio.get_running_loop().time() - began < 1  # not the 5 s bound
            return list(writer.stats.batch_sizes)
        finally:
            await writer.stop()

    assert asyncio.run(scenario()) == [2, 10, 1]


def test_gathering_a_batch_stops_at_its_time_bound(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int], int]:
        writer = await _busy_writer(tmp_path / "audit.sqlite3", gather_s=0.02)
        try:
            futures = []
            loop = asyncio.get_running_loop()
            stop = loop.time() + 0.3
            i = 2
            while loop.time() < stop:  # a record every turn, for far longer than the bound
                futures.append(writer.append(record(i, "alpha")))
                i += 1
                await asyncio.sleep(0)
            await asyncio.gather(*futures)
            return list(writer.stats.batch_sizes), i
        finally:
            await writer.stop()

    sizes, appended = asyncio.run(scenario())
    assert len(sizes) >= 5, sizes  # commits went on while records kept coming
    assert sum(sizes) == appended


def test_a_batch_is_stored_whole_or_not_at_all(store_url: str) -> None:
    """Large batches (the SQLite store inserts them in parts) come back whole and in order; a
    batch that fails part-way leaves none of its records behind."""

    def rows(first: int, n: int) -> list[StoredRecord]:
        return [
            StoredRecord(
                "replica-a",
                i,
                f"2026-11-01T00:00:{i % 60:02d}.000000Z",
                "alpha",
                bytes(32),
                canonical(record(i, "alpha")),
            )
            for i in range(first, first + n)
        ]

    async def run() -> tuple[list[StoredRecord], list[StoredRecord]]:
        store = open_store(store_url)
        await store.open()
        try:
            await store.append_batch(rows(0, 150))
            stored = await store.read(Query(log_id="replica-a"))
            clash = rows(150, 150)
            clash[140] = rows(3, 1)[0]  # a sequence number already taken, in the third part
            with pytest.raises(StoreUnavailable):
                await store.append_batch(clash)
            return stored, await store.read(Query(log_id="replica-a"))
        finally:
            await store.aclose()

    stored, after = asyncio.run(run())
    assert stored == rows(0, 150)
    assert after == stored
