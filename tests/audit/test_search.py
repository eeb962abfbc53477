"""Newest-first pages of records on both stores (the console's records view), and the report."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.canonical import canonical
from gateway.audit.query import Cursor, PageQuery, RecordFilter
from gateway.audit.report import build_report, render_html, render_text
from gateway.audit.search import find_all, find_page
from gateway.audit.setup import open_store
from gateway.audit.signing import Signer
from gateway.audit.store import AuditStore
from gateway.audit.writer import AuditWriter

SIGNER = Signer(Ed25519PrivateKey.generate())
DEPLOYMENT = {
    "id": "gpt-4o@azure-sweden",
    "backend": "azure-sweden",
    "inference_country": "SE",
    "operator": "Microsoft Ireland Operations Ltd",
    "operator_control_chain": ["IE", "US"],
    "weights_origin": "US",
}


def _record(i: int) -> dict[str, Any]:
    moment = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i // 2)
    refused = i % 5 == 0
    return {
        "v": 1,
        # two records share each minute, so the keyset's tie-break on (log, seq) is exercised
        "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "tenant": ("alpha", "beta", "gamma")[i % 3],
        "requested_model": "gpt-4o",
        "decision": "refused" if refused else "allowed",
        "status": 403 if refused else (502 if i % 7 == 0 else 200),
        "policy_revision": "sha256:aaaa" if i < 60 else "sha256:bbbb",
        "deployment": None if refused else DEPLOYMENT,
        "refusal": (
            {"candidates": [{"deployment": "x", "failed_rules": ["inference_country"]}]}
            if refused
            else None
        ),
        "error": {"type": "api_error", "code": "upstream_error"} if i % 7 == 0 else None,
    }


async def _fill(url: str, n: int) -> None:
    """Two logs, written alternately, as two replicas would."""
    writers = [
        AuditWriter(open_store(url), SIGNER, log, checkpoint_every=10, checkpoint_interval_s=3600)
        for log in ("replica-a", "replica-b")
    ]
    for w in writers:
        await w.start()
    try:
        for i in range(n):
            await writers[i % 2].append(_record(i))
    finally:
        for w in writers:
            await w.stop()


async def _all_pages(store: AuditStore, wanted: RecordFilter, **kw: Any) -> list[Any]:
    seen: list[Any] = []
    cursor: Cursor | None = None
    for _ in range(1000):
        page = await find_page(store, PageQuery(before=cursor), wanted, **kw)
        seen.extend(page.rows)
        if page.next is None:
            return seen
        cursor = page.next
    raise AssertionError("the pages never ended")


def test_pages_cover_every_match_once_newest_first(store_url: str) -> None:
    async def run() -> None:
        await _fill(store_url, 120)
        store = open_store(store_url)
        await store.open()
        try:
            everything = await _all_pages(store, RecordFilter(), size=7)
            keys = [(f.record["time"], f.log_id, f.seq) for f in everything]
            assert len(keys) == 120 and len(set(keys)) == 120
            assert keys == sorted(keys, reverse=True)
            refused = await _all_pages(store, RecordFilter(decision="refused"), size=5)
            assert len(refused) == 24
            assert all(f.record["decision"] == "refused" for f in refused)
            # a search that runs out of time says how far back it looked, and goes on from there
            rule = RecordFilter(rule="inference_country")
            first = await find_page(store, PageQuery(), rule, size=50, budget_s=0, window=10)
            assert first.searched_to is not None and first.next is not None
            assert len(first.rows) < 24
            slow = await _all_pages(store, rule, size=50, budget_s=0, window=10)
            assert [(f.log_id, f.seq) for f in slow] == [(f.log_id, f.seq) for f in refused]
            # 5xx and the tenant scope, exported in full
            errors = [
                f
                async for f in find_all(store, PageQuery(tenant="beta"), RecordFilter(status="5xx"))
            ]
            expected = [i for i in range(120) if i % 7 == 0 and i % 5 and i % 3 == 1]
            assert len(errors) == len(expected)
            assert {f.record["tenant"] for f in errors} == {"beta"}
            one = await store.record(errors[0].log_id, errors[0].seq)
            assert one is not None and canonical(errors[0].record) == one.body
            assert await store.size("replica-a") == 60
        finally:
            await store.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("wanted", "key"),
    [
        (RecordFilter(rule="inference_country"), "refusal"),
        (RecordFilter(jurisdiction="us"), "deployment"),
        (RecordFilter(status="5xx"), "status"),
        (RecordFilter(country="se", backend="azure-sweden", model="gpt-4o"), "deployment"),
    ],
)
def test_the_sql_prefilter_never_drops_a_match(wanted: RecordFilter, key: str) -> None:
    matches = [r for r in map(_record, range(120)) if wanted.matches(r)]
    assert matches, key
    for record in matches:
        body = canonical(record)
        assert all(n in body for n in wanted.needles()), (record, wanted.needles())
    # and it drops most non-matches (the rule id is also a key of every served record)
    others = [canonical(r) for r in map(_record, range(120)) if not wanted.matches(r)]
    assert sum(all(n in b for n in wanted.needles()) for b in others) < len(others) / 2


def test_the_report_covers_the_chosen_logs_and_tenant_in_words(tmp_path: Any) -> None:
    url = f"sqlite:{tmp_path / 'audit.sqlite3'}"

    async def run() -> tuple[str, str]:
        await _fill(url, 60)
        store = open_store(url)
        await store.open()
        try:
            report = await build_report(
                store,
                None,
                None,
                SIGNER.public_key,
                tenant="alpha",
                log_ids=["replica-a"],
                revision_in_force="sha256:cccc",
            )
        finally:
            await store.aclose()
        return render_text(report), render_html(report)

    text, page = asyncio.run(run())
    assert "Tenant: alpha" in text
    assert "Logs: replica-a" in text
    assert "replica-b" not in text
    assert "policy revision in force: sha256:cccc" in text
    assert "Generated: 20" in text
    assert "Inference runs in an allowed country [inference_country]" in text
    assert "Requests: 10" in text  # alpha's records of replica-a: i % 6 == 0
    assert "replica-a: verified (" in text
    assert "Inference runs in an allowed country [inference_country]</th>" in page
