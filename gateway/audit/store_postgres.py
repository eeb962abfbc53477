"""The production audit store: PostgreSQL through asyncpg.

A batch is one `INSERT ... SELECT FROM unnest(...)`: one statement, so one transaction and one round
trip, on a connection kept for the writer (a pooled connection costs a reset query on every
release, and BEGIN, COPY and COMMIT would cost four round trips more). Reads use a small pool.

The writer's connection carries its own application name. When an operation on it fails or is
given up (a stalled server, a cut connection), the connection is dropped, but its server process
may still hold the batch, and a stalled network may still deliver it: `settle` first ends that
process (`pg_terminate_backend`, waiting for it to go), and only then reads back what landed.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import orjson

from gateway.audit.merkle import Frontier
from gateway.audit.query import POSTGRES, Cursor, PageQuery, page_sql, window_end_sql
from gateway.audit.signing import Checkpoint
from gateway.audit.store import (
    Query,
    StoredRecord,
    StoreUnavailable,
    schema_sql,
    select_records,
    settled,
)

SCHEMA = schema_sql(integer="BIGINT", blob="BYTEA")

INSERT_BATCH = """
INSERT INTO audit_records (log_id, seq, time, tenant, leaf, body)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[])
"""
ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)
WRITER_NAME = "sovereign-gateway-audit-writer"
CONNECT_TIMEOUT_S = 5.0


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: Any = None
        self._writer: Any = None
        self._writer_pid = 0
        self._dropped: list[int] = []  # server processes of writer connections given up
        self._lock = asyncio.Lock()

    async def _pool_or_fail(self) -> Any:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, command_timeout=10, timeout=CONNECT_TIMEOUT_S
                )
            except ERRORS as exc:
                raise StoreUnavailable(f"PostgreSQL audit store: {exc}") from exc
        return self._pool

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        pool = await self._pool_or_fail()
        try:
            return await getattr(pool, method)(sql, *args)
        except ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL audit store: {exc}") from exc

    async def open(self) -> None:
        await self._write("execute", SCHEMA)  # both connections are ready before the first request
        await self._pool_or_fail()

    async def _write(self, method: str, sql: str, *args: Any) -> Any:
        """Run one statement on the writer's connection, one at a time (batches and checkpoints
        come from two tasks); a failure or a cancellation drops the connection."""
        async with self._lock:
            return await self._write_now(method, sql, *args)

    async def _write_now(self, method: str, sql: str, *args: Any) -> Any:
        try:
            if self._writer is None or self._writer.is_closed():
                self._writer = await asyncpg.connect(
                    self.dsn,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=None,  # the writer bounds each call itself
                    server_settings={"application_name": WRITER_NAME},
                )
                self._writer_pid = self._writer.get_server_pid()
            return await getattr(self._writer, method)(sql, *args)
        except BaseException as exc:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._dropped.append(self._writer_pid)
                writer.terminate()
            if isinstance(exc, ERRORS):
                raise StoreUnavailable(f"PostgreSQL audit store: {exc}") from exc
            raise

    async def append_batch(self, records: list[StoredRecord]) -> None:
        rows = [(r.log_id, r.seq, r.time, r.tenant, r.leaf, r.body) for r in records]
        columns = [list(column) for column in zip(*rows, strict=True)]
        await self._write("execute", INSERT_BATCH, *columns)

    async def settle(self, records: list[StoredRecord]) -> bool:
        if self._dropped:
            await self._write(
                "fetchval",
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM"
                " pg_stat_activity WHERE pid = ANY($1::int[]) AND application_name = $2) t",
                self._dropped,
                WRITER_NAME,
            )
            alive = await self._write(
                "fetchval",
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE pid = ANY($1::int[]) AND application_name = $2",
                self._dropped,
                WRITER_NAME,
            )
            if alive:
                raise StoreUnavailable(
                    "PostgreSQL audit store: a dropped writer connection is still alive"
                )
            self._dropped = []
        first, last = records[0], records[-1]
        found = await self._write(
            "fetch",
            "SELECT seq, leaf FROM audit_records WHERE log_id = $1 AND seq BETWEEN $2 AND $3"
            " ORDER BY seq",
            first.log_id,
            first.seq,
            last.seq,
        )
        return settled(records, [(r[0], bytes(r[1])) for r in found])

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._write(
            "execute",
            "INSERT INTO audit_checkpoints VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            checkpoint.log_id,
            checkpoint.size,
            checkpoint.time,
            orjson.dumps(checkpoint.as_json()),
        )

    async def read(self, query: Query) -> list[StoredRecord]:
        sql, args = select_records(query, lambda n: f"${n}")
        rows = await self._call("fetch", sql, *args)
        return [StoredRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    async def page(self, query: PageQuery) -> list[StoredRecord]:
        sql, args = page_sql(query, POSTGRES)
        rows = await self._call("fetch", sql, *args)
        return [StoredRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    async def window_end(self, query: PageQuery) -> Cursor | None:
        sql, args = window_end_sql(query, POSTGRES)
        row = await self._call("fetchrow", sql, *args)
        return Cursor(row[0], row[1], row[2]) if row else None

    async def record(self, log_id: str, seq: int) -> StoredRecord | None:
        r = await self._call(
            "fetchrow",
            "SELECT log_id, seq, time, tenant, leaf, body FROM audit_records"
            " WHERE log_id = $1 AND seq = $2",
            log_id,
            seq,
        )
        return StoredRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) if r else None

    async def size(self, log_id: str) -> int:
        row = await self._call(
            "fetchrow", "SELECT max(seq) FROM audit_records WHERE log_id = $1", log_id
        )
        return int(row[0]) + 1 if row and row[0] is not None else 0

    async def checkpoints(self, log_id: str) -> list[Checkpoint]:
        rows = await self._call(
            "fetch",
            "SELECT body FROM audit_checkpoints WHERE log_id = $1 ORDER BY size, time",
            log_id,
        )
        return [Checkpoint.from_json(orjson.loads(bytes(r[0]))) for r in rows]

    async def log_ids(self) -> list[str]:
        rows = await self._call(
            "fetch",
            "SELECT log_id FROM audit_checkpoints UNION SELECT log_id FROM audit_records"
            " ORDER BY 1",
        )
        return [r[0] for r in rows]

    async def base(self, log_id: str) -> Frontier:
        row = await self._call(
            "fetchrow", "SELECT frontier FROM audit_bases WHERE log_id = $1", log_id
        )
        return Frontier.from_json(orjson.loads(bytes(row[0]))) if row else Frontier()

    async def leaves(self, log_id: str) -> list[bytes]:
        rows = await self._call(
            "fetch", "SELECT leaf FROM audit_records WHERE log_id = $1 ORDER BY seq", log_id
        )
        return [bytes(r[0]) for r in rows]

    async def prune(self, log_id: str, size: int, frontier: Frontier) -> int:
        pool = await self._pool_or_fail()
        try:
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "DELETE FROM audit_records WHERE log_id = $1 AND seq < $2", log_id, size
                )
                await conn.execute(
                    "INSERT INTO audit_bases VALUES ($1, $2) ON CONFLICT (log_id)"
                    " DO UPDATE SET frontier = excluded.frontier",
                    log_id,
                    orjson.dumps(frontier.to_json()),
                )
        except ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL audit store: {exc}") from exc
        return int(str(status).rsplit(" ", 1)[-1])

    async def content_key(self, tenant: str) -> bytes:
        await self._call(
            "execute",
            "INSERT INTO audit_content_keys VALUES ($1, $2) ON CONFLICT DO NOTHING",
            tenant,
            secrets.token_bytes(32),
        )
        row = await self._call(
            "fetchrow", "SELECT key FROM audit_content_keys WHERE tenant = $1", tenant
        )
        return bytes(row[0])

    async def aclose(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                await writer.close(timeout=CONNECT_TIMEOUT_S)
            except ERRORS:
                writer.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await pool.close()
            except ERRORS:
                pool.terminate()
