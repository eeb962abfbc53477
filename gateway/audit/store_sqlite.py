"""The embedded audit store: SQLite in WAL mode, `synchronous=FULL` (every commit is fsynced).

One connection, used from one worker thread, so the event loop never waits on the disk.

A batch is inserted with one multi-row `INSERT` per `ROWS_PER_INSERT` records rather than with
`executemany`, which steps every row as a statement of its own, letting go of the GIL and taking
it back from the busy event loop each time. With 16 clients this took 1.5-2.5 µs of CPU per
record off the SQLite thread and gave 2-7% more throughput (`bench/README.md`).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson

from gateway.audit.merkle import Frontier
from gateway.audit.signing import Checkpoint
from gateway.audit.store import (
    Query,
    StoredRecord,
    StoreUnavailable,
    schema_sql,
    select_records,
)
from gateway.files import make_private_dirs, restrict, touch_private
from gateway.worker_thread import WorkerThread

T = TypeVar("T")

SCHEMA = schema_sql(integer="INTEGER", blob="BLOB")
COLUMNS = 6  # log_id, seq, time, tenant, leaf, body
# one statement per batch size up to this, each kept in the connection's statement cache (128)
ROWS_PER_INSERT = 64


ROW = "(" + ",".join("?" * COLUMNS) + ")"


def insert_sql(rows: int) -> str:
    return "INSERT INTO audit_records VALUES " + ",".join([ROW] * rows)  # noqa: S608


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = WorkerThread("audit-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise StoreUnavailable("the SQLite audit store is closed")
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite audit store: {exc}") from exc

        return await self._thread.run(call)

    async def open(self) -> None:
        def connect() -> None:
            make_private_dirs(self.path.parent)
            touch_private(self.path)  # SQLite gives its -wal and -shm files the database's mode
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            self._db = db
            restrict(*(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm")))

        await self._thread.run(connect)

    async def append_batch(self, records: list[StoredRecord]) -> None:
        values = [v for r in records for v in (r.log_id, r.seq, r.time, r.tenant, r.leaf, r.body)]
        step = ROWS_PER_INSERT * COLUMNS

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(values), step):
                    chunk = values[start : start + step]
                    db.execute(insert_sql(len(chunk) // COLUMNS), chunk)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await self._run(write)

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        body = orjson.dumps(checkpoint.as_json())
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO audit_checkpoints VALUES (?, ?, ?, ?)",
                (checkpoint.log_id, checkpoint.size, checkpoint.time, body),
            )
        )

    async def read(self, query: Query) -> list[StoredRecord]:
        sql, args = select_records(query, lambda _: "?")
        rows = await self._run(lambda db: db.execute(sql, args).fetchall())
        return [StoredRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    async def checkpoints(self, log_id: str) -> list[Checkpoint]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT body FROM audit_checkpoints WHERE log_id = ? ORDER BY size, time",
                (log_id,),
            ).fetchall()
        )
        return [Checkpoint.from_json(orjson.loads(r[0])) for r in rows]

    async def log_ids(self) -> list[str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT log_id FROM audit_checkpoints UNION SELECT log_id FROM audit_records"
                " ORDER BY 1"
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def base(self, log_id: str) -> Frontier:
        row = await self._run(
            lambda db: db.execute(
                "SELECT frontier FROM audit_bases WHERE log_id = ?", (log_id,)
            ).fetchone()
        )
        return Frontier.from_json(orjson.loads(row[0])) if row else Frontier()

    async def leaves(self, log_id: str) -> list[bytes]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT leaf FROM audit_records WHERE log_id = ? ORDER BY seq", (log_id,)
            ).fetchall()
        )
        return [bytes(r[0]) for r in rows]

    async def prune(self, log_id: str, size: int, frontier: Frontier) -> int:
        body = orjson.dumps(frontier.to_json())

        def prune(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                deleted = db.execute(
                    "DELETE FROM audit_records WHERE log_id = ? AND seq < ?", (log_id, size)
                ).rowcount
                db.execute(
                    "INSERT INTO audit_bases VALUES (?, ?) ON CONFLICT (log_id)"
                    " DO UPDATE SET frontier = excluded.frontier",
                    (log_id, body),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return int(deleted)

        return await self._run(prune)

    async def content_key(self, tenant: str) -> bytes:
        def get(db: sqlite3.Connection) -> bytes:
            db.execute(
                "INSERT OR IGNORE INTO audit_content_keys VALUES (?, ?)",
                (tenant, secrets.token_bytes(32)),
            )
            row = db.execute(
                "SELECT key FROM audit_content_keys WHERE tenant = ?", (tenant,)
            ).fetchone()
            return bytes(row[0])

        return await self._run(get)

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._thread.run(close)
        await self._thread.stop()
