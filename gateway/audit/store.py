"""What an audit store does; `store_sqlite.py` and `store_postgres.py` do it.

Records are kept as their canonical JSON with the leaf hash beside it, per log (one log per
replica, so replicas never contend for a chain head). Checkpoints are kept for ever; pruning
removes whole epochs (the records up to a checkpoint) and keeps the Merkle frontier at that point,
so the rest of the log still verifies against the signed roots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.audit.merkle import Frontier
from gateway.audit.signing import Checkpoint


@dataclass(frozen=True, slots=True)
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


class StoreUnavailable(Exception):
    """The store could not take or give records."""


class AuditStore(Protocol):
    async def open(self) -> None: ...

    async def append_batch(self, records: list[StoredRecord]) -> None:
        """All or nothing, durable when it returns."""
        ...

    async def checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def read(self, query: Query) -> list[StoredRecord]: ...

    async def checkpoints(self, log_id: str) -> list[Checkpoint]: ...

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
