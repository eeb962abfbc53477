"""The audit writer: group commit, the running Merkle root, signed checkpoints.

Requests hand their record to `append` and wait on the future it returns. One task takes everything
pending (up to `batch_max`), numbers the records, hashes them into the tree and commits them in one
transaction; then every waiting request goes on. Under load it first lets the batch grow while each
turn of the event loop brings more records (for at most `gather_s`). A batch that is not committed
within `commit_timeout_s` fails, with every request in it (a SQLite write already under way may
still land: the log can then hold a request that was refused with 503, never miss one that was
answered). A checkpoint is signed every `checkpoint_every` records and every
`checkpoint_interval_s` seconds, also when idle. When a batch cannot be committed the writer stops
accepting (strict mode: the proxy then refuses with 503 before forwarding anything) and probes the
store on each tick until it takes writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.canonical import canonical
from gateway.audit.merkle import Frontier, leaf_hash
from gateway.audit.record import rfc3339
from gateway.audit.signing import Signer
from gateway.audit.store import AuditStore, StoredRecord, StoreUnavailable
from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.audit")


class AuditWriteFailed(Exception):
    """The record was not committed."""


@dataclass
class WriterStats:
    records: int = 0
    batches: int = 0
    failed_batches: int = 0
    checkpoints: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    commit_seconds: list[float] = field(default_factory=list)

    def observe(self, size: int, seconds: float) -> None:
        self.records += size
        self.batches += 1
        self.batch_sizes.append(size)
        self.commit_seconds.append(seconds)
        if len(self.batch_sizes) > 4096:  # keep recent samples only
            del self.batch_sizes[:2048], self.commit_seconds[:2048]


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        signer: Signer,
        log_id: str,
        *,
        batch_max: int = 512,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[int, float], None] | None = None,
        commit_timeout_s: float = 30.0,
        gather_s: float = 0.002,
    ) -> None:
        self.store = store
        self.signer = signer
        self.log_id = log_id
        self._batch_max = batch_max
        self._last_batch = 0
        self._checkpoint_every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._clock = clock
        self._on_batch = on_batch
        self._commit_timeout_s = commit_timeout_s
        self._gather_s = gather_s
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._frontier = Frontier()
        self._signed_size = -1
        self._tasks: list[asyncio.Task[None]] = []
        self.accepting = False
        self.last_checkpoint_at = 0.0
        self.stats = WriterStats()

    @property
    def size(self) -> int:
        return self._frontier.size

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        await self.store.open()
        await self._recover()
        self.accepting = True
        await self.checkpoint()
        self._tasks = [
            asyncio.create_task(self._run(), name="audit-writer"),
            asyncio.create_task(self._tick(), name="audit-checkpoints"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        pending, self._pending = self._pending, []
        if pending:
            await self._commit(pending)
        with contextlib.suppress(StoreUnavailable):
            await self.checkpoint()
        self.accepting = False
        await self.store.aclose()

    def append(self, record: dict[str, Any]) -> asyncio.Future[int]:
        """Queue `record` for commit; the future gives its sequence number once it is durable."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():  # done: cancelled with the writer at shutdown
                wakeup.set_result(None)
        return future

    async def checkpoint(self) -> None:
        """Sign the current size and root (also when nothing changed: it shows the log is live)."""
        size, root = self._frontier.size, self._frontier.root()
        cp = self.signer.sign(self.log_id, size, root, rfc3339(self._clock()))
        await self.store.checkpoint(cp)
        self._signed_size = size
        self.last_checkpoint_at = self._clock()
        self.stats.checkpoints += 1

    async def _recover(self) -> None:
        frontier = (await self.store.base(self.log_id)).copy()
        for leaf in await self.store.leaves(self.log_id):
            frontier.append(leaf)
        self._frontier = frontier

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup = loop.create_future()
                await self._wakeup
            if self._last_batch > 1:
                await self._gather(loop)
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            self._last_batch = len(batch)
            try:
                await self._commit(batch)
            except Exception as exc:  # the writer must outlive a bad record: fail the batch
                log.exception("audit batch failed", extra={"event": "audit_batch_error"})
                for _, future in batch:
                    if not future.done():
                        future.set_exception(AuditWriteFailed(f"{type(exc).__name__}: {exc}"))

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Under load, let the batch grow while each turn of the event loop brings more records.

        Every commit costs the same whatever its size (a transaction, an fsync, a hop to the
        store's thread), so on a busy loop fewer, larger commits leave more time for requests;
        a turn that brings nothing means the requests in flight are still upstream, and waiting
        longer would only add latency. Bounded by `gather_s` and `batch_max`.
        """
        deadline = loop.time() + self._gather_s
        while len(self._pending) < self._batch_max:
            seen = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == seen or loop.time() >= deadline:
                return

    async def _commit(self, batch: list[tuple[dict[str, Any], asyncio.Future[int]]]) -> None:
        frontier = self._frontier.copy()
        rows: list[StoredRecord] = []
        for record, _ in batch:
            record["log_id"] = self.log_id
            record["seq"] = frontier.size
            body = canonical(record, check=False)  # RecordBuilder emits no floats
            leaf = leaf_hash(body)
            rows.append(
                StoredRecord(
                    self.log_id, frontier.size, record["time"], record["tenant"], leaf, body
                )
            )
            frontier.append(leaf)
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self._commit_timeout_s):
                await self.store.append_batch(rows)
        except (StoreUnavailable, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                exc = StoreUnavailable(f"no commit within {self._commit_timeout_s:g} s")
            self.accepting = False
            self.stats.failed_batches += 1
            log.error(
                "audit store refused a batch; requests are refused until it recovers",
                extra={"event": "audit_write_failed", "records": len(rows), "error": str(exc)},
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(AuditWriteFailed(str(exc)))
            return
        seconds = time.perf_counter() - began
        self._frontier = frontier
        self.accepting = True
        self.stats.observe(len(rows), seconds)
        if self._on_batch is not None:
            self._on_batch(len(rows), seconds)
        for (_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result(row.seq)
        if frontier.size - max(self._signed_size, 0) >= self._checkpoint_every:
            with contextlib.suppress(StoreUnavailable):
                await self.checkpoint()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # only a tick that re-read the log may reopen it: a batch that failed while this
            # tick's checkpoint waited may still land (a timed-out SQLite write does)
            recovering = not self.accepting
            try:
                if recovering:
                    await self._recover()  # a batch may have landed before the failure was seen
                await self.checkpoint()
            except StoreUnavailable as exc:
                log.error(
                    "audit store unavailable",
                    extra={"event": "audit_store_unavailable", "error": str(exc)},
                )
                continue
            if recovering and not self.accepting:
                log.info("audit store is back", extra={"event": "audit_store_recovered"})
                self.accepting = True
