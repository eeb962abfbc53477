"""Filters compliance teams use on records, shared by `audit query`, the audit API and the console.

The console reads records a page at a time, newest first, by keyset (time, log id, sequence
number), so a page costs the same at the millionth record as at the first. Tenant and time go to
indexed columns. The other filters are matched twice: in SQL, as a byte string the record's
canonical JSON must contain (`"decision":"refused"`; sorted keys and no spaces make the spelling
fixed), which skips most rows without parsing them; then exactly, in Python, on the parsed record.
A page scans at most `window` rows, so a filter that matches nothing answers as quickly as one
that matches everything, and says how far back it looked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import orjson

DECISIONS = ("allowed", "refused", "error")
FIELDS = ("decision", "model", "country", "jurisdiction", "backend", "rule", "status")
STATUS_CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600), "error": (400, 1000)}


@dataclass(frozen=True)
class RecordFilter:
    decision: str | None = None
    model: str | None = None  # requested model or alias
    country: str | None = None  # inference country of the deployment used
    jurisdiction: str | None = None  # any link of the operator's control chain
    backend: str | None = None
    rule: str | None = None  # a rule that refused some candidate
    status: str | None = None  # an HTTP status (`403`) or a class (`4xx`, `5xx`, `error`)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RecordFilter:
        return cls(**{name: str(values.get(name) or "").strip() or None for name in FIELDS})

    def matches(self, record: dict[str, Any]) -> bool:
        dep = record.get("deployment") or {}
        if self.decision and record.get("decision") != self.decision:
            return False
        if self.model and record.get("requested_model") != self.model:
            return False
        if self.country and dep.get("inference_country") != self.country.upper():
            return False
        chain = dep.get("operator_control_chain", [])
        if self.jurisdiction and self.jurisdiction.upper() not in chain:
            return False
        if self.backend and dep.get("backend") != self.backend:
            return False
        if self.rule and self.rule not in refusing_rules(record):
            return False
        return not self.status or _status_matches(self.status, record.get("status"))

    def needles(self) -> list[bytes]:
        """Byte strings every matching record's canonical JSON contains (a superset test)."""
        out: list[bytes] = []

        def pair(key: str, value: Any) -> None:
            out.append(orjson.dumps({key: value})[1:-1])

        if self.decision:
            pair("decision", self.decision)
        if self.model:
            pair("requested_model", self.model)
        if self.country:
            pair("inference_country", self.country.upper())
        if self.jurisdiction:
            out.append(orjson.dumps(self.jurisdiction.upper()))
        if self.backend:
            pair("backend", self.backend)
        if self.rule:  # a rule id can also be a key ("inference_country"): refusals only
            out.append(b'"failed_rules":[')
            out.append(orjson.dumps(self.rule))
        if self.status and self.status.isdigit():
            pair("status", int(self.status))
        elif self.status and self.status.lower() in ("2xx", "4xx", "5xx"):
            out.append(b'"status":' + self.status[:1].encode())  # statuses have three digits
        return out

    def as_params(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name))}


def refusing_rules(record: dict[str, Any]) -> set[str]:
    refusal = record.get("refusal") or {}
    return {r for c in refusal.get("candidates", []) for r in c.get("failed_rules", [])}


def _status_matches(wanted: str, status: Any) -> bool:
    if not isinstance(status, int):
        return False
    if wanted.isdigit():
        return status == int(wanted)
    low, high = STATUS_CLASSES.get(wanted.lower(), (0, 0))
    return low <= status < high


# what a later record of a request says about it; the rest comes from its first record
LATER = frozenset({"kind", "status", "duration_us", "first_byte_us", "usage", "error", "content"})


def requests_of(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per request, in log order: a stream's `admitted` and `completed` records and
    any `correction` are merged (the later record's outcome wins), and `outage` records, which
    describe no request, are left out. `seqs` lists the records merged."""
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        request_id = record.get("request_id")
        if request_id is None:
            continue
        seen = merged.get(request_id)
        if seen is None:
            merged[request_id] = {**record, "seqs": [record.get("seq")]}
            continue
        seen.update((k, v) for k, v in record.items() if k in LATER)
        seen["seqs"].append(record.get("seq"))
    return list(merged.values())


def stored_time(text: str | None, *, end_of_day: bool = False) -> str | None:
    """A date or an RFC 3339 time as stored (UTC, microseconds, 'Z'); a date stands for its
    start, or with `end_of_day` for the start of the next day (for an inclusive 'to' date)."""
    if not text:
        return None
    text = text.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end_of_day else 0)
        return day.isoformat() + "T00:00:00.000000Z"
    if "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 date or time: {text!r}")
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the newest-first order: the key of the last row a page showed."""

    time: str
    log_id: str
    seq: int

    def encode(self) -> str:
        return f"{self.time}~{self.seq}~{self.log_id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        time, _, rest = text.partition("~")
        seq, _, log_id = rest.partition("~")
        if not (time and seq.isdigit() and log_id):
            return None
        return cls(time, log_id, int(seq))


@dataclass(frozen=True)
class PageQuery:
    tenant: str | None = None
    since: str | None = None  # stored form, inclusive
    until: str | None = None  # stored form, exclusive
    log_ids: tuple[str, ...] = ()
    needles: tuple[bytes, ...] = ()
    before: Cursor | None = None
    limit: int = 50
    window: int | None = 100_000  # rows scanned at most; None: no bound (exports)

    def after(self, cursor: Cursor) -> PageQuery:
        return replace(self, before=cursor)


@dataclass(frozen=True)
class Dialect:
    """How a store spells a parameter (`?`, `$1`) and 'the body contains these bytes'."""

    placeholder: Callable[[int], str]
    contains: Callable[[str], str]
    needle: Callable[[bytes], Any]  # the needle as the `contains` parameter


def _glob_pattern(needle: bytes) -> str:
    # GLOB, case-sensitive, ran twice as fast as instr() over record bodies in SQLite 3.40
    text = needle.decode()
    for special in "[*?":
        text = text.replace(special, f"[{special}]") if special != "[" else text.replace("[", "[[]")
    return f"*{text}*"


SQLITE = Dialect(lambda _: "?", lambda p: f"CAST(body AS TEXT) GLOB {p}", _glob_pattern)
POSTGRES = Dialect(lambda n: f"${n}", lambda p: f"position({p}::bytea in body) > 0", bytes)
ORDER = "ORDER BY time DESC, log_id DESC, seq DESC"


def _scope(query: PageQuery, dialect: Dialect, args: list[Any]) -> list[str]:
    """The indexed part: tenant, time range, logs, and the keyset position."""

    def param(value: Any) -> str:
        args.append(value)
        return dialect.placeholder(len(args))

    clauses: list[str] = []
    if query.tenant is not None:
        clauses.append(f"tenant = {param(query.tenant)}")
    if query.since is not None:
        clauses.append(f"time >= {param(query.since)}")
    if query.until is not None:
        clauses.append(f"time < {param(query.until)}")
    if query.log_ids:
        clauses.append(f"log_id IN ({', '.join(param(i) for i in query.log_ids)})")
    if query.before is not None:
        b = query.before
        clauses.append(
            f"(time, log_id, seq) < ({param(b.time)}, {param(b.log_id)}, {param(b.seq)})"
        )
    return clauses


def page_sql(query: PageQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """Rows of one page, newest first: the scope's first `window` rows, then the needles."""
    args: list[Any] = []
    scope = _scope(query, dialect, args)
    where = " WHERE " + " AND ".join(scope) if scope else ""
    columns = "log_id, seq, time, tenant, leaf, body"
    inner = f"SELECT {columns} FROM audit_records{where} {ORDER}"  # noqa: S608
    if query.window is not None:
        inner += f" LIMIT {int(query.window)}"
    tests = []
    for needle in query.needles:
        args.append(dialect.needle(needle))
        tests.append(dialect.contains(dialect.placeholder(len(args))))
    outer_where = " WHERE " + " AND ".join(tests) if tests else ""
    # no ORDER BY outside: the window streams in order, and sorting it would read all of it
    sql = f"SELECT {columns} FROM ({inner}) AS scanned{outer_where} LIMIT {int(query.limit)}"  # noqa: S608
    return sql, args


def window_end_sql(query: PageQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """The key of the last row a page's window covers (none if the scope ends before it)."""
    args: list[Any] = []
    scope = _scope(query, dialect, args)
    where = " WHERE " + " AND ".join(scope) if scope else ""
    offset = max(0, int(query.window or 0) - 1)
    sql = f"SELECT time, log_id, seq FROM audit_records{where} {ORDER} LIMIT 1 OFFSET {offset}"  # noqa: S608
    return sql, args
