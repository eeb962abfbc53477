"""The overview: the last hours' requests by inference country and operator jurisdiction over
time, refusals by rule, top tenants, errors, the policy in force and the audit writer's state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from gateway.audit.record import rfc3339
from gateway.audit.store import AuditStore, Query
from gateway.audit.summary import Summary, summarise
from gateway.audit.writer import AuditWriter

PERIODS = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}


async def summary_since(store: AuditStore, now: dt.datetime, hours: int) -> Summary:
    since = rfc3339((now - dt.timedelta(hours=hours)).timestamp())
    rows = await store.read(Query(since=since))
    return summarise(
        ((r.log_id, r.seq, orjson.loads(r.body)) for r in rows), 13 if hours <= 48 else 10
    )


def writer_state(writer: AuditWriter | None) -> dict[str, Any]:
    if writer is None:
        return {"enabled": False}
    last = writer.last_checkpoint_at
    return {
        "enabled": True,
        "log_id": writer.log_id,
        "accepting": writer.accepting,
        "size": writer.size,
        "backlog": writer.backlog,
        "failed_batches": writer.stats.failed_batches,
        "last_checkpoint": rfc3339(last) if last else None,
    }
