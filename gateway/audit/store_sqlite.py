"""The embedded audit store: SQLite in WAL mode, `synchronous=FULL` (every commit is fsynced).

One connection, used from one worker thread, so the event loop never waits on the disk.

The writer's store is opened with its log id and holds an exclusive `flock` on
`<database>.<log id>.lock` (0600, beside the database) for as long as it is open: a second process
asking for the same log fails to open (`LogTaken`); the lock goes with the process, even on kill -9.

A batch is inserted with one multi-row `INSERT` per `ROWS_PER_INSERT` records rather than with
`executemany`, which steps every row as a statement of its own, letting go of the GIL and taking
it back from the busy event loop each time. With 16 clients this took 1.5-2.5 µs of CPU per
record off the SQLite thread and gave 2-7% more throughput (`bench/README.md`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import orjson

from gateway.audit.merkle import Frontier
from gateway.audit.query import SQLITE, Cursor, PageQuery, page_sql, window_end_sql
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
from gateway.audit.worker_thread import WorkerThread
from gateway.files import make_private_dirs, restrict, touch_private

T = TypeVar("T")

SCHEMA = schema_sql(integer="INTEGER", blob="BLOB")
COLUMNS = 6  # log_id, seq, time, tenant, leaf, body
# one statement per batch size up to this, each kept in the connection's statement cache (128)
ROWS_PER_INSERT = 64


# a batch is refused (the store is unavailable) while the volume has less free space than this:
# SQLite then fails cleanly before the disk is full, and the log comes back only with room to grow
MIN_FREE_BYTES = 8 * 2**20

ROW = "(" + ",".join("?" * COLUMNS) + ")"


def insert_sql(rows: int) -> str:
    return "INSERT INTO audit_records VALUES " + ",".join([ROW] * rows)  # noqa: S608


class SQLiteStore:
    def __init__(
        self, path: Path, min_free_bytes: int = MIN_FREE_BYTES, log_id: str | None = None
    ) -> None:
        self.path = path
        self.log_id = log_id  # the log this process writes: locked while the store is open
        self._lock_fd: int | None = None
        self._min_free = min_free_bytes
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
            if self.log_id is not None and self._lock_fd is None:
                self._lock_fd = self._take(self.log_id)
            touch_private(self.path)  # SQLite gives its -wal and -shm files the database's mode
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            self._db = db
            restrict(*(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm")))

        await self._thread.run(connect)

    def _take(self, log_id: str) -> int:
        path = self.path.with_name(f"{self.path.name}.{quote(log_id, safe='')}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogTaken(log_id, f"sqlite:{self.path}") from None
        return fd

    async def append_batch(self, records: list[StoredRecord]) -> None:
        values = [v for r in records for v in (r.log_id, r.seq, r.time, r.tenant, r.leaf, r.body)]
        step = ROWS_PER_INSERT * COLUMNS

        def write(db: sqlite3.Connection) -> None:
            self._check_room()
            db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(values), step):
                    chunk = values[start : start + step]
                    db.execute(insert_sql(len(chunk) // COLUMNS), chunk)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)  # a COMMIT that failed (disk full) may leave it open
                raise

        await self._run(write)

    def _check_room(self) -> None:
        try:
            stat = os.statvfs(self.path.parent)
        except OSError as exc:
            raise StoreUnavailable(f"SQLite audit store: {exc}") from exc
        free = stat.f_bavail * stat.f_frsize
        if free < self._min_free:
            raise StoreUnavailable(
                f"SQLite audit store: {free} bytes free on its volume, below the"
                f" {self._min_free} it keeps in reserve"
            )

    async def settle(self, records: list[StoredRecord]) -> bool:
        # calls run in order on one thread: a write that timed out has finished by now
        first, last = records[0], records[-1]
        found = await self._run(
            lambda db: db.execute(
                "SELECT seq, leaf FROM audit_records WHERE log_id = ? AND seq BETWEEN ? AND ?"
                " ORDER BY seq",
                (first.log_id, first.seq, last.seq),
            ).fetchall()
        )
        return settled(records, found)

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

    async def page(self, query: PageQuery) -> list[StoredRecord]:
        sql, args = page_sql(query, SQLITE)
        rows = await self._run(lambda db: db.execute(sql, args).fetchall())
        return [StoredRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    async def window_end(self, query: PageQuery) -> Cursor | None:
        sql, args = window_end_sql(query, SQLITE)
        row = await self._run(lambda db: db.execute(sql, args).fetchone())
        return Cursor(row[0], row[1], row[2]) if row else None

    async def record(self, log_id: str, seq: int) -> StoredRecord | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT log_id, seq, time, tenant, leaf, body FROM audit_records"
                " WHERE log_id = ? AND seq = ?",
                (log_id, seq),
            ).fetchone()
        )
        return (
            StoredRecord(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]))
            if row
            else None
        )

    async def size(self, log_id: str) -> int:
        row = await self._run(
            lambda db: db.execute(
                "SELECT max(seq) FROM audit_records WHERE log_id = ?", (log_id,)
            ).fetchone()
        )
        return int(row[0]) + 1 if row and row[0] is not None else 0

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
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
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
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the log is free for the next process
                self._lock_fd = None

        await self._thread.run(close)
        await self._thread.stop()


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
