"""What an audit store does; `store_sqlite.py` and `store_postgres.py` do it.

Records are kept as their canonical JSON with the leaf hash beside it, per log (one log per
replica, so replicas never contend for a chain head). Checkpoints are kept for ever; pruning
removes whole epochs (the records up to a checkpoint) and keeps the Merkle frontier at that point,
so the rest of the log still verifies against the signed roots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.audit.merkle import Frontier
from gateway.audit.query import Cursor, PageQuery
from gateway.audit.signing import Checkpoint
from gateway.startup import StartupRefused

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    log_id TEXT NOT NULL,
    seq {integer} NOT NULL,
    time TEXT NOT NULL,
    tenant TEXT,
    leaf {blob} NOT NULL,
    body {blob} NOT NULL,
    PRIMARY KEY (log_id, seq)
);
-- newest-first pages (query.py) read the key from the index alone; the older indexes on
-- (tenant, time) and (time) are prefixes of these, so they go
CREATE INDEX IF NOT EXISTS audit_records_page ON audit_records (time, log_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_tenant_page ON audit_records (tenant, time, log_id, seq);
DROP INDEX IF EXISTS audit_records_tenant_time;
DROP INDEX IF EXISTS audit_records_time;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    log_id TEXT NOT NULL,
    size {integer} NOT NULL,
    time TEXT NOT NULL,
    body {blob} NOT NULL,
    PRIMARY KEY (log_id, size, time)
);
CREATE TABLE IF NOT EXISTS audit_bases (
    log_id TEXT PRIMARY KEY,
    frontier {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_content_keys (
    tenant TEXT PRIMARY KEY,
    key {blob} NOT NULL
);
"""


def schema_sql(integer: str, blob: str) -> str:
    """The tables both stores use, in a dialect's column types."""
    return SCHEMA.format(integer=integer, blob=blob)


@dataclass(slots=True)  # not frozen: a frozen dataclass costs four times as much to make
class StoredRecord:
    log_id: str
    seq: int
    time: str
    tenant: str | None
    leaf: bytes
    body: bytes


@dataclass(frozen=True)
class Query:
    log_id: str | None = None
    tenant: str | None = None
    since: str | None = None  # RFC 3339, inclusive
    until: str | None = None  # RFC 3339, exclusive
    limit: int | None = None


def select_records(query: Query, placeholder: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The SQL of `read` and its arguments; `placeholder(n)` spells parameter n (`?`, `$n`)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("log_id", "=", query.log_id),
        ("tenant", "=", query.tenant),
        ("time", ">=", query.since),
        ("time", "<", query.until),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} {op} {placeholder(len(args))}")
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    columns = "log_id, seq, time, tenant, leaf, body"
    sql = f"SELECT {columns} FROM audit_records{where} ORDER BY log_id, seq"  # noqa: S608
    if query.limit is not None:
        sql += f" LIMIT {int(query.limit)}"
    return sql, args


class StoreUnavailable(Exception):
    """The store could not take or give records."""


class LogTaken(StartupRefused):
    """Another process holds the lock on this log id: two writers would fork the log."""

    def __init__(self, log_id: str, store: str) -> None:
        super().__init__(
            f"audit log {log_id!r} is being written by another process (store {store}):"
            " each replica needs its own audit_log_id (SGW_AUDIT_LOG_ID)"
        )


def settled(records: list[StoredRecord], found: list[tuple[int, bytes]]) -> bool:
    """Whether the (seq, leaf) pairs read back show the batch `records` whole, or not at all."""
    if not found:
        return False
    if [(r.seq, r.leaf) for r in records] == [(seq, bytes(leaf)) for seq, leaf in found]:
        return True
    raise StoreUnavailable(
        f"log {records[0].log_id}: records {records[0].seq}..{records[-1].seq} in the store"
        " are not the batch this writer sent; is another writer using the same log id?"
    )


class AuditStore(Protocol):
    async def open(self) -> None: ...

    async def append_batch(self, records: list[StoredRecord]) -> None:
        """All or nothing, durable when it returns."""
        ...

    async def settle(self, records: list[StoredRecord]) -> bool:
        """Make the outcome of a batch whose commit was not confirmed definite: True if it is in
        the store, False if it is not and never will be. Raises `StoreUnavailable` if it cannot
        tell yet. A batch found partly, or with other leaves, means another writer used this log:
        that is an error, never papered over."""
        ...

    async def checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def read(self, query: Query) -> list[StoredRecord]: ...

    async def checkpoints(self, log_id: str) -> list[Checkpoint]: ...

    async def page(self, query: PageQuery) -> list[StoredRecord]:
        """Newest first, from `query.before` on, within its window (`query.py`)."""
        ...

    async def window_end(self, query: PageQuery) -> Cursor | None:
        """The key of the last row `query`'s window covers, if the scope reaches that far."""
        ...

    async def record(self, log_id: str, seq: int) -> StoredRecord | None: ...

    async def size(self, log_id: str) -> int:
        """The log's length: its last stored sequence number plus one (0 if it has none)."""
        ...

    async def log_ids(self) -> list[str]: ...

    async def base(self, log_id: str) -> Frontier:
        """The frontier the stored records continue from (empty unless pruned)."""
        ...

    async def leaves(self, log_id: str) -> list[bytes]:
        """Leaf hashes of the stored records of a log, in order."""
        ...

    async def prune(self, log_id: str, size: int, frontier: Frontier) -> int:
        """Delete records below `size` (a checkpoint's size); keep `frontier` as the base."""
        ...

    async def content_key(self, tenant: str) -> bytes:
        """The tenant's key for content hashes, made on first use."""
        ...

    async def aclose(self) -> None: ...
