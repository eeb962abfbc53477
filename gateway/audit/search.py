"""Pages of matching records, newest first, in bounded time; and every match, for exports.

A page reads windows of `WINDOW` rows from the cursor on (the SQL prefilter drops most rows of a
selective filter inside the store), checks each candidate exactly, and stops when the page is
full, when the log has no older rows, or when `budget_s` has passed. In the last case the page
says how far back it looked (`searched_to`), and the next page continues from there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from gateway.audit.query import Cursor, PageQuery, RecordFilter
from gateway.audit.store import AuditStore

WINDOW = 2_500


@dataclass
class Found:
    log_id: str
    seq: int
    record: dict[str, Any]

    @property
    def cursor(self) -> Cursor:
        return Cursor(str(self.record["time"]), self.log_id, self.seq)


@dataclass
class Page:
    rows: list[Found] = field(default_factory=list)
    next: Cursor | None = None  # where the next page starts; None: nothing older
    searched_to: str | None = None  # set when the time budget ran out before the page filled
    scanned_windows: int = 0


async def find_page(
    store: AuditStore,
    scope: PageQuery,
    wanted: RecordFilter,
    size: int = 50,
    budget_s: float = 0.12,
    window: int = WINDOW,
) -> Page:
    page = Page()
    deadline = time.monotonic() + budget_s
    query = replace(scope, needles=tuple(wanted.needles()), limit=size + 1, window=window)
    while True:
        page.scanned_windows += 1
        rows = await store.page(query)
        rows.sort(key=lambda r: (r.time, r.log_id, r.seq), reverse=True)
        for row in rows:
            record = orjson.loads(row.body)
            if wanted.matches(record):
                if len(page.rows) == size:
                    page.next = page.rows[-1].cursor
                    return page
                page.rows.append(Found(row.log_id, row.seq, record))
        if len(rows) == query.limit:  # the window holds more candidates: go on after the last
            last = rows[-1]
            resume: Cursor | None = Cursor(last.time, last.log_id, last.seq)
        else:
            resume = await store.window_end(query)
        if resume is None:  # the scope ends inside this window
            return page
        query = query.after(resume)
        if time.monotonic() >= deadline:
            page.next = resume
            page.searched_to = resume.time
            return page


async def find_all(
    store: AuditStore, scope: PageQuery, wanted: RecordFilter, chunk: int = 2_000
) -> AsyncIterator[Found]:
    """Every match, newest first, a chunk at a time (the CSV export)."""
    query = replace(scope, needles=tuple(wanted.needles()), limit=chunk, window=None)
    while True:
        rows = await store.page(query)
        rows.sort(key=lambda r: (r.time, r.log_id, r.seq), reverse=True)
        for row in rows:
            record = orjson.loads(row.body)
            if wanted.matches(record):
                yield Found(row.log_id, row.seq, record)
        if len(rows) < chunk:
            return
        last = rows[-1]
        query = query.after(Cursor(last.time, last.log_id, last.seq))
