"""What the request path sees of the audit log: `require` before forwarding, `admit` before a
stream's first byte, `record` after.

Strict mode is the only mode: when the store cannot take records, `require` refuses the request
with 503 before anything is forwarded, and a request whose record could not be committed gets a
503 instead of its answer. No request waits longer than `timeout_s` for its record: past that it
gives the record up (the writer drops it, or corrects it if it lands anyway) and is answered 503.
While the store is unavailable a record fails at once. `None` as the writer turns the audit log
off (benchmarks only).
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.audit.record import RecordBuilder, content_mode
from gateway.audit.store import StoreUnavailable
from gateway.audit.writer import AuditWriteFailed, AuditWriter
from gateway.errors import AuditUnavailable
from gateway.exchange import Exchange
from gateway.observability.logs import Collapsed
from gateway.policy.schema import AuditContent

log = logging.getLogger("gateway.audit")
_GAVE_UP = "the record was not committed in time"


class AuditLog:
    def __init__(self, writer: AuditWriter | None, timeout_s: float = 2.0) -> None:
        self.writer = writer
        self._timeout_s = timeout_s
        self._records = RecordBuilder()
        self._content_keys: dict[str, bytes] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._lost = Collapsed(log)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def require(self) -> None:
        if self.writer is not None and not self.writer.available:  # counted with its record
            raise AuditUnavailable(
                "The audit log cannot take records, so no request is forwarded; try again later",
                headers={"retry-after": "5"},
            )

    def wants_content(self, exchange: Exchange) -> bool:
        return self.writer is not None and content_mode(exchange) is not AuditContent.NONE

    async def record(self, exchange: Exchange) -> None:
        """Commit the record of `exchange`; raises `AuditUnavailable` when it cannot."""
        await self._commit(exchange, admission=False)

    async def admit(self, exchange: Exchange) -> None:
        """Commit the admission record of a stream (before its first byte); `record` later
        completes it. Raises `AuditUnavailable` when it cannot."""
        exchange.admitted_seq = await self._commit(exchange, admission=True)

    async def _commit(self, exchange: Exchange, admission: bool) -> int | None:
        writer = self.writer
        if writer is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            mode = content_mode(exchange)
            key = None
            if mode is AuditContent.HASH and not admission:
                async with asyncio.timeout_at(deadline):
                    key = await self._content_key(exchange.principal.tenant)
            record = self._records.build(exchange, time.perf_counter(), key, mode, admission)
            future = writer.append(record)
            if future.done():  # refused at once: the store is unavailable
                return future.result()
            timer = loop.call_at(deadline, writer.give_up, future, _GAVE_UP)
            try:
                return await future
            finally:
                timer.cancel()
        except (AuditWriteFailed, StoreUnavailable, TimeoutError) as exc:
            raise AuditUnavailable(
                "The audit log could not record this request, so its answer is withheld",
                headers={"retry-after": "5"},
            ) from exc

    def record_later(self, exchange: Exchange) -> None:
        """For requests whose client has gone: record without anyone waiting."""
        if self.writer is None:
            return
        task = asyncio.get_running_loop().create_task(self._record_quietly(exchange))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _record_quietly(self, exchange: Exchange) -> None:
        try:
            await self.record(exchange)
        except AuditUnavailable:
            self._lost.log(
                logging.ERROR,
                "audit record lost for a request whose client had gone",
                "audit_record_lost",
                request_id=exchange.request_id,
            )

    async def _content_key(self, tenant: str) -> bytes:
        """The tenant's key for `hash` mode, read from the store once."""
        assert self.writer is not None
        key = self._content_keys.get(tenant)
        if key is None:
            key = self._content_keys[tenant] = await self.writer.store.content_key(tenant)
        return key
