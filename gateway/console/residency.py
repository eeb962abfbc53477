"""The residency report of one tenant over a period: where its requests ran, under which
operators and jurisdictions, what was refused and why, the policy revisions in force, and the
signed checkpoint of each log that covers the period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from gateway.audit.report import AuditReport, build_report
from gateway.audit.store import AuditStore


@dataclass
class Period:
    since: str  # dates as typed, YYYY-MM-DD
    until: str  # inclusive


def default_period(today: dt.date) -> Period:
    return Period(today.replace(day=1).isoformat(), today.isoformat())


async def residency(
    store: AuditStore, tenant: str, since: str, until: str, revision_in_force: str
) -> tuple[AuditReport, list[dict[str, Any]]]:
    """The report, and per log the first checkpoint that covers the period's last record."""
    report = await build_report(
        store, since, until, tenant=tenant, revision_in_force=revision_in_force
    )
    covering = []
    for log_id, last in sorted(report.summary.last_seq.items()):
        later = [c for c in await store.checkpoints(log_id) if c.size > last]
        first = min(later, key=lambda c: (c.size, c.time)) if later else None
        covering.append(
            {"log_id": log_id, "last_seq": last, "checkpoint": first and first.as_json()}
        )
    return report, covering
