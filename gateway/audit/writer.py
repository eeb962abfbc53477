"""The audit writer: group commit, the running Merkle root, signed checkpoints, outages.

Requests hand their record to `append` and wait on the future it returns. One task takes everything
pending (up to `batch_max`), numbers the records, hashes them into the tree and commits them in one
transaction; then every waiting request goes on. Under load it first lets the batch grow while each
turn of the event loop brings more records (for at most `gather_s`). A checkpoint is signed every
`checkpoint_every` records and every `checkpoint_interval_s` seconds, also when idle.

When the store fails (refused, stalled past `commit_timeout_s`, full), the writer stops accepting:
from then on `append` fails at once, so no request waits behind a stuck store, and the proxy
refuses with 503 before forwarding anything. The failed batch is *in doubt*: its commit may still
land (a write under way on the SQLite thread, bytes held in a stalled PostgreSQL connection).
Nothing else is written until the store has settled it (`AuditStore.settle`): either it is in the
log, and each of its requests, whose client was answered 503, gets a `correction` record saying
so, or it never will be, and its sequence numbers are used again. A recovery task retries with
backoff (up to `retry_max_s`); the store is declared back only once a real batch of records has
committed: an `outage` record (since when, how many requests were refused) with the corrections.

A waiter may also give up on its record (`give_up`, the request's own time bound): a record not yet
taken into a batch is then dropped, one whose batch commits anyway gets a correction.
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
from gateway.audit.record import FORMAT_VERSION, rfc3339
from gateway.audit.signing import Signer
from gateway.audit.store import AuditStore, StoredRecord, StoreUnavailable
from gateway.observability.logs import Collapsed
from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.audit")

# an internal record (correction, outage) has no waiter
Entry = tuple[dict[str, Any], "asyncio.Future[int] | None"]


class AuditWriteFailed(Exception):
    """The record was not committed."""


@dataclass
class WriterStats:
    records: int = 0
    batches: int = 0
    failed_batches: int = 0
    checkpoints: int = 0
    refused: int = 0  # requests refused at once while the store was unavailable
    corrections: int = 0
    outages: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    commit_seconds: list[float] = field(default_factory=list)

    def observe(self, size: int, seconds: float) -> None:
        self.records += size
        self.batches += 1
        self.batch_sizes.append(size)
        self.commit_seconds.append(seconds)
        if len(self.batch_sizes) > 4096:  # keep recent samples only
            del self.batch_sizes[:2048], self.commit_seconds[:2048]


@dataclass
class _Doubt:
    """A batch whose commit was not confirmed, with the tree as it would be if it landed."""

    entries: list[Entry]
    rows: list[StoredRecord]
    frontier: Frontier


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
        commit_timeout_s: float = 2.0,
        retry_max_s: float = 2.0,
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
        self._retry_max_s = retry_max_s
        self._gather_s = gather_s
        self._pending: list[Entry] = []
        self._owed: list[dict[str, Any]] = []  # corrections and outage records to write first
        self._wakeup: asyncio.Future[None] | None = None
        self._frontier = Frontier()
        self._signed_size = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._doubt: _Doubt | None = None
        self._committing_since: float | None = None
        self._down_since: float | None = None
        self._refused_in_outage = 0
        self._stopping = False
        self._errors = Collapsed(log, interval_s=max(5.0, checkpoint_interval_s))
        self.accepting = False
        self.last_checkpoint_at = 0.0
        self.stats = WriterStats()

    @property
    def size(self) -> int:
        return self._frontier.size

    @property
    def backlog(self) -> int:
        return len(self._pending)

    @property
    def available(self) -> bool:
        """Whether to forward a request now: the store took the last batch and the commit under
        way, if any, has not yet taken half the time it is allowed (a stall shows there first)."""
        if not self.accepting:
            return False
        began = self._committing_since
        return began is None or time.perf_counter() - began < self._commit_timeout_s / 2

    def refuse(self) -> None:
        """Count a request refused because the store is unavailable (for the outage record)."""
        self.stats.refused += 1
        self._refused_in_outage += 1

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
        self._stopping = True
        tasks = [*self._tasks, *([self._recovery] if self._recovery else [])]
        await cancel_and_wait(tasks)
        self._tasks, self._recovery = [], None
        pending = [(r, f) for r, f in self._pending if f is None or not f.done()]
        self._pending = []
        if self.accepting and (pending or self._owed):
            await self._commit(self._with_owed(pending))
        else:
            self._fail(pending, "the audit writer stopped")
        if self.accepting:
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(self._commit_timeout_s):
                    await self.checkpoint()
        self.accepting = False
        self._errors.flush()
        await self.store.aclose()

    def append(self, record: dict[str, Any]) -> asyncio.Future[int]:
        """Queue `record` for commit; the future gives its sequence number once it is durable.
        While the store is unavailable the future has failed already: nobody waits."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self.accepting:
            self.refuse()
            future.set_exception(AuditWriteFailed("the audit store is unavailable"))
            return future
        self._pending.append((record, future))
        self._wake()
        return future

    @staticmethod
    def give_up(future: asyncio.Future[int], reason: str) -> None:
        """The waiter answers without its record: drop it, or correct it if it lands anyway."""
        if not future.done():
            future.set_exception(AuditWriteFailed(reason))
            future.exception()  # retrieved: nobody else will

    async def checkpoint(self) -> None:
        """Sign the current size and root (also when nothing changed: it shows the log is live)."""
        size, root = self._frontier.size, self._frontier.root()
        cp = self.signer.sign(self.log_id, size, root, rfc3339(self._clock()))
        await self.store.checkpoint(cp)
        self._signed_size = size
        self.last_checkpoint_at = self._clock()
        self.stats.checkpoints += 1

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():  # done: cancelled with the writer at shutdown
                wakeup.set_result(None)

    async def _recover(self) -> None:
        frontier = (await self.store.base(self.log_id)).copy()
        for leaf in await self.store.leaves(self.log_id):
            frontier.append(leaf)
        self._frontier = frontier

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending and not (self._owed and self.accepting):
                self._wakeup = loop.create_future()
                await self._wakeup
            if self._last_batch > 1:
                await self._gather(loop)
            taken = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            # a record whose waiter gave up before its batch was formed is never written
            batch = [(r, f) for r, f in taken if f is None or not f.done()]
            if not self.accepting:
                self._fail(batch, "the audit store is unavailable")
                continue
            batch = self._with_owed(batch)
            self._last_batch = len(batch)
            if not batch:
                continue
            try:
                await self._commit(batch)
            except Exception as exc:  # the writer must outlive a bad record: fail the batch
                log.exception("audit batch failed", extra={"event": "audit_batch_error"})
                self._fail(batch, f"{type(exc).__name__}: {exc}")

    def _with_owed(self, batch: list[Entry]) -> list[Entry]:
        if not self._owed:
            return batch
        owed, self._owed = self._owed, []
        return [*((r, None) for r in owed), *batch]

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

    def _rows(self, batch: list[Entry]) -> tuple[list[StoredRecord], Frontier]:
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
        return rows, frontier

    async def _commit(self, batch: list[Entry]) -> bool:
        rows, frontier = self._rows(batch)
        began = self._committing_since = time.perf_counter()
        try:
            async with asyncio.timeout(self._commit_timeout_s):
                await self.store.append_batch(rows)
        except (StoreUnavailable, TimeoutError) as exc:
            error = (
                f"no commit within {self._commit_timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            self._down(_Doubt(batch, rows, frontier), error)
            return False
        finally:
            self._committing_since = None
        seconds = time.perf_counter() - began
        self._landed(batch, rows, frontier)
        self.stats.observe(len(rows), seconds)
        if self._on_batch is not None:
            self._on_batch(len(rows), seconds)
        if frontier.size - max(self._signed_size, 0) >= self._checkpoint_every:
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(self._commit_timeout_s):
                    await self.checkpoint()
        return True

    def _landed(self, batch: list[Entry], rows: list[StoredRecord], frontier: Frontier) -> None:
        self._frontier = frontier
        for (record, future), row in zip(batch, rows, strict=True):
            if future is None:
                continue
            if not future.done():
                future.set_result(row.seq)
            else:  # its waiter gave up and was answered 503: say so in the log
                self._owe_correction(record, row.seq)

    def _owe_correction(self, record: dict[str, Any], seq: int) -> None:
        self.stats.corrections += 1
        self._owed.append(
            {
                "v": FORMAT_VERSION,
                "kind": "correction",
                "time": record["time"],
                "request_id": record.get("request_id"),
                "tenant": record.get("tenant"),
                "corrects": seq,
                "status": 503,
                "error": {"type": "service_unavailable", "code": "audit_unavailable"},
                "reason": "the commit of this record was not confirmed in time, so the client"
                " was answered 503 (or had gone)",
            }
        )

    def _fail(self, batch: list[Entry], reason: str) -> None:
        for record, future in batch:
            if future is None:
                self._owed.append(record)  # ours: written once the store is back
            elif not future.done():
                future.set_exception(AuditWriteFailed(reason))

    def _down(self, doubt: _Doubt, error: str) -> None:
        """The store failed a batch: stop accepting, fail everyone waiting, start recovering."""
        self.accepting = False
        self.stats.failed_batches += 1
        if self._down_since is None:
            self._down_since = self._clock()
        self._doubt = doubt
        for _, future in doubt.entries:
            if future is not None and not future.done():
                future.set_exception(AuditWriteFailed(error))
        pending, self._pending = self._pending, []
        self._fail(pending, error)
        self._errors.log(
            logging.ERROR,
            "audit store failed a batch; requests are refused until it recovers",
            "audit_write_failed",
            records=len(doubt.rows),
            error=error,
        )
        if not self._stopping and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.get_running_loop().create_task(
                self._heal(), name="audit-recovery"
            )

    async def _heal(self) -> None:
        """Retry with backoff until the batch in doubt is settled and a real batch commits."""
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)
            try:
                async with asyncio.timeout(self._commit_timeout_s):
                    await self._settle()
            except (StoreUnavailable, TimeoutError) as exc:
                error = str(exc) or f"no answer within {self._commit_timeout_s:g} s"
                self._errors.log(
                    logging.ERROR,
                    "audit store unavailable",
                    "audit_store_unavailable",
                    error=error,
                )
                continue
            if not any(r.get("kind") == "outage" for r in self._owed):
                self._owed.insert(0, self._outage_record())
            owed, self._owed = self._owed, []
            if await self._commit([(r, None) for r in owed]):
                break
        self._errors.flush()
        down_since, self._down_since = self._down_since, None
        self.accepting = True
        log.warning(
            "audit store is back",
            extra={
                "event": "audit_store_recovered",
                "down_s": round(self._clock() - (down_since or self._clock()), 3),
            },
        )
        self._wake()

    async def _settle(self) -> None:
        doubt = self._doubt
        if doubt is None:
            return
        landed = await self.store.settle(doubt.rows)
        self._doubt = None
        if landed:
            self._frontier = doubt.frontier
            for (record, future), row in zip(doubt.entries, doubt.rows, strict=True):
                if future is not None:  # a waiter: it was answered 503
                    self._owe_correction(record, row.seq)
        else:  # never will land: our own records are written again, the rest were refused
            for record, future in doubt.entries:
                if future is not None:
                    self._refused_in_outage += 1
                elif record.get("kind") == "outage":  # its count goes into the next one
                    self._refused_in_outage += int(record["refused"])
                else:
                    self._owed.append(record)

    def _outage_record(self) -> dict[str, Any]:
        self.stats.outages += 1
        since = self._down_since if self._down_since is not None else self._clock()
        refused, self._refused_in_outage = self._refused_in_outage, 0
        return {
            "v": FORMAT_VERSION,
            "kind": "outage",
            "time": rfc3339(self._clock()),
            "tenant": None,
            "since": rfc3339(since),
            "refused": refused,
        }

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if not self.accepting:
                continue  # the recovery task talks to the store, with backoff
            if self._owed and not self._pending:
                self._wake()
            try:
                async with asyncio.timeout(self._commit_timeout_s):
                    await self.checkpoint()
            except (StoreUnavailable, TimeoutError) as exc:
                self._errors.log(
                    logging.ERROR,
                    "audit checkpoint failed",
                    "audit_checkpoint_failed",
                    error=str(exc) or "timed out",
                )
