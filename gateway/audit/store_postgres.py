"""The production audit store: PostgreSQL through asyncpg.

A batch is one `INSERT ... SELECT FROM unnest(...)`: one statement, so one transaction and one round
trip, on a connection kept for the writer (a pooled connection costs a reset query on every
release, and BEGIN, COPY and COMMIT would cost four round trips more). Reads use a small pool.

The writer's connection carries its own application name. When an operation on it fails or is
given up (a stalled server, a cut connection), the connection is dropped, but its server process
may still hold the batch, and a stalled network may still deliver it: `settle` first ends that
process (`pg_terminate_backend`, waiting for it to go), and only then reads back what landed.

The writer's store is opened with its log id and holds a session advisory lock on it (a hash of
the schema and the log id) on the writer's connection: a second process asking for the same log
fails to open (`LogTaken`). Each new writer connection takes the lock again before it writes,
after ending the server processes of the connections it dropped (one of them may still hold it);
while another process holds it, nothing is written and the store stays unavailable.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from gateway.audit.merkle import Frontier
from gateway.audit.query import POSTGRES, Cursor, PageQuery, page_sql, window_end_sql
from gateway.audit.signing import Checkpoint
from gateway.audit.store import (
    LogTaken,
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
TAKE_LOG = (
    "SELECT pg_try_advisory_lock(hashtextextended("
    "'sovereign-gateway audit log ' || coalesce(current_schema(), '') || ' ' || $1, 0))"
)
CONNECT_TIMEOUT_S = 5.0


class PostgresStore:
    def __init__(self, dsn: str, log_id: str | None = None) -> None:
        self.dsn = dsn
        self.log_id = log_id  # the log this process writes: locked on the writer's connection
        self._held = False  # the lock was taken once: losing it later is an outage, not a refusal
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
            if self._writer is not None and self._writer.is_closed():
                self._dropped.append(self._writer_pid)  # its server process may live on
                self._writer = None
            if self._writer is None:
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=None,  # the writer bounds each call itself
                    server_settings={"application_name": WRITER_NAME},
                )
                try:
                    await self._end_dropped(conn)
                    await self._take_log(conn)
                except BaseException:
                    conn.terminate()
                    raise
                self._writer, self._writer_pid = conn, conn.get_server_pid()
            return await getattr(self._writer, method)(sql, *args)
        except BaseException as exc:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._dropped.append(self._writer_pid)
                writer.terminate()
            if isinstance(exc, ERRORS):
                raise StoreUnavailable(f"PostgreSQL audit store: {exc}") from exc
            raise

    async def _end_dropped(self, conn: Any) -> None:
        """End the server processes of writer connections given up: a batch they still hold
        must not land after `settle` has read, and their lock on the log must go."""
        if not self._dropped:
            return
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM"
            " pg_stat_activity WHERE pid = ANY($1::int[]) AND application_name = $2) t",
            self._dropped,
            WRITER_NAME,
        )
        alive = await conn.fetchval(
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

    async def _take_log(self, conn: Any) -> None:
        if self.log_id is None or await conn.fetchval(TAKE_LOG, self.log_id):
            self._held = self.log_id is not None
            return
        if not self._held:
            raise LogTaken(self.log_id, _where(self.dsn))
        raise StoreUnavailable(
            f"PostgreSQL audit store: another process holds audit log {self.log_id!r}"
        )

    async def append_batch(self, records: list[StoredRecord]) -> None:
        rows = [(r.log_id, r.seq, r.time, r.tenant, r.leaf, r.body) for r in records]
        columns = [list(column) for column in zip(*rows, strict=True)]
        await self._write("execute", INSERT_BATCH, *columns)

    async def settle(self, records: list[StoredRecord]) -> bool:
        # the read goes through the writer's connection: made anew, it ended the dropped ones
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


def _where(dsn: str) -> str:
    """The store as an operator knows it, without credentials."""
    url = urlsplit(dsn)
    where = f"postgresql://{url.hostname or ''}{f':{url.port}' if url.port else ''}{url.path}"
    return where + (f"?{url.query}" if url.query else "")
