"""The records page: its filter from the query string, rows as people read them, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.audit.query import Cursor, PageQuery, RecordFilter, refusing_rules, stored_time
from gateway.audit.search import Found, find_all
from gateway.audit.store import AuditStore

FORM_FIELDS = (
    *("tenant", "since", "until", "decision", "model", "country", "jurisdiction"),
    *("backend", "rule", "status"),
)
CSV_COLUMNS = [
    "time",
    "tenant",
    "requested_model",
    "decision",
    "status",
    "deployment",
    "inference_country",
    "operator",
    "operator_control_chain",
    "refusing_rules",
    "error",
    "policy_revision",
    "log_id",
    "seq",
]


@dataclass
class Search:
    scope: PageQuery
    wanted: RecordFilter
    form: dict[str, str]  # what the form shows, as typed
    problem: str | None = None


def search_from(params: Mapping[str, str]) -> Search:
    form = {name: str(params.get(name) or "").strip() for name in FORM_FIELDS}
    problem = None
    try:
        since = stored_time(form["since"])
        until = stored_time(form["until"], end_of_day=True)
    except ValueError:
        since = until = None
        problem = "Dates must be written as YYYY-MM-DD (for example 2026-11-30)."
    scope = PageQuery(
        tenant=form["tenant"] or None,
        since=since,
        until=until,
        before=Cursor.decode(params.get("before")),
    )
    return Search(scope, RecordFilter.from_mapping(form), form, problem)


def row(found: Found) -> dict[str, Any]:
    record = found.record
    dep = record.get("deployment") or {}
    error = record.get("error") or {}
    return {
        "log_id": found.log_id,
        "seq": found.seq,
        "time": record.get("time"),
        "tenant": record.get("tenant"),
        "model": record.get("requested_model"),
        "decision": record.get("decision"),
        "status": record.get("status"),
        "deployment": dep.get("id"),
        "country": dep.get("inference_country"),
        "operator": dep.get("operator"),
        "chain": " > ".join(dep.get("operator_control_chain") or []),
        "rules": sorted(refusing_rules(record)),
        "error": error.get("code") or error.get("type"),
    }


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


async def csv_lines(store: AuditStore, search: Search) -> AsyncIterator[bytes]:
    yield _csv_line(CSV_COLUMNS)
    scope = PageQuery(search.scope.tenant, search.scope.since, search.scope.until)
    async for found in find_all(store, scope, search.wanted):
        r = row(found)
        yield _csv_line(
            [
                r["time"],
                r["tenant"],
                r["model"],
                r["decision"],
                r["status"],
                r["deployment"] or "",
                r["country"] or "",
                r["operator"] or "",
                r["chain"],
                " ".join(r["rules"]),
                r["error"] or "",
                found.record.get("policy_revision") or "",
                found.log_id,
                found.seq,
            ]
        )
