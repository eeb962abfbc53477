"""The console's pages, one read-only page per question (sign-in and sign-out: `sign_in.py`).

Every page needs a session (`Console.session`); the one form here (verify now) is POST with a
token. Nothing here writes to the audit log or the policy.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from gateway.api.audit import fresh_checkpoint
from gateway.audit.export import ExportError, export_tenant
from gateway.audit.record import rfc3339
from gateway.audit.search import find_page
from gateway.console import integrity, overview, policy_view, record, records, residency
from gateway.console.app import PREFIX, Console, console_of
from gateway.console.render import HEADERS
from gateway.console.session import Session, check_csrf
from gateway.console.sign_in import form_fields
from gateway.policy.rule_names import ATTESTATIONS, RULES

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _page(console: Console, request: Request, session: Session, name: str, **ctx: Any) -> Response:
    return console.pages.render(
        name,
        ctx.pop("status", 200),
        session=session,
        path=request.url.path,
        audit_on=console.writer() is not None,
        **ctx,
    )


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    period = request.query_params.get("period", "24h")
    hours = overview.PERIODS.get(period, 24)
    writer = console.writer()
    now = dt.datetime.now(dt.UTC)
    summary = await overview.summary_since(writer.store, now, hours) if writer else None
    holder = console.parts.policy
    return _page(
        console,
        request,
        session,
        "overview.html",
        period=period,
        periods=overview.PERIODS,
        summary=summary,
        writer=overview.writer_state(writer),
        revision=holder.current.revision,
        loaded_at=holder.loaded_at,
        last_reload=console.parts.reloader.last_reload,
        generated=now,
    )


def _choices(console: Console) -> dict[str, list[str]]:
    compiled = console.parts.policy.current
    catalog = compiled.policy.catalog
    tenants = sorted(compiled.policy.tenants)
    classes = sorted({c for t in tenants for c in compiled.data_classes(t)})
    base = [*RULES, *(f"attestation:{k}" for k in ATTESTATIONS)]
    return {
        "tenants": tenants,
        "models": sorted(
            {*catalog.models, *(a for t in tenants for a in compiled.policy.tenants[t].aliases)}
        ),
        "countries": sorted({b.country for b in catalog.backends.values()}),
        "jurisdictions": sorted(
            {j for b in catalog.backends.values() for j in b.operator.control_chain()}
        ),
        "backends": sorted(catalog.backends),
        "rules": [*base, *(f"data_class[{c}].{r}" for c in classes for r in base)],
    }


@router.get("/records")
async def records_page(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    search = records.search_from(request.query_params)
    if writer is not None and request.query_params.get("format") == "csv":
        return StreamingResponse(
            records.csv_lines(writer.store, search),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="audit-records.csv"', **HEADERS},
        )
    page = None
    started = time.perf_counter()
    if writer is not None and search.problem is None:
        page = await find_page(writer.store, search.scope, search.wanted)
    filters = {k: v for k, v in search.form.items() if v}
    return _page(
        console,
        request,
        session,
        "records.html",
        search=search,
        page=page,
        rows=[records.row(f) for f in page.rows] if page else [],
        filters=filters,
        query=urlencode(filters),
        older=urlencode({**filters, "before": page.next.encode()}) if page and page.next else None,
        first_page=search.scope.before is None,
        choices=_choices(console),
        took_ms=(time.perf_counter() - started) * 1000,
    )


@router.get("/records/export")
async def tenant_export(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    tenant = request.query_params.get("tenant", "").strip()
    if writer is None or not tenant:
        return Response("Choose a tenant first.", 400, headers=HEADERS)
    lines: list[bytes] = []
    try:
        fresh = await fresh_checkpoint(writer)  # this replica's log: nothing left unsigned
        now = rfc3339(time.time())
        for log_id in await writer.store.log_ids():
            upto = fresh if log_id == writer.log_id else None
            lines.extend(
                await export_tenant(writer.store, log_id, tenant, writer.signer, now, upto)
            )
    except ExportError as exc:
        return Response(f"This export cannot be made: {exc}", 409, headers=HEADERS)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in tenant)
    return Response(
        b"".join(lines),
        media_type="application/x-ndjson",
        headers={
            "content-disposition": f'attachment; filename="{name}-audit-export.jsonl"',
            **HEADERS,
        },
    )


@router.get("/records/{log_id}/{seq}")
async def record_page(request: Request, log_id: str, seq: int) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    stored = await writer.store.record(log_id, seq) if writer else None
    if writer is None or stored is None:
        return _page(console, request, session, "missing.html", status=404, what="record")
    body = orjson.loads(stored.body)
    return _page(
        console,
        request,
        session,
        "record.html",
        stored=stored,
        record=body,
        explained=record.explanation(console.parts.policy, body),
        proof=await record.check_proof(
            writer.store,
            stored,
            writer.signer.public_key,
            None if request.query_params.get("proof") == "now" else record.INLINE_PROOF_LEAVES,
        ),
        key=integrity.key_facts(writer.signer.public_key),
    )


async def _integrity(request: Request, verified: list[integrity.Verification] | None) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    if writer is None:
        return _page(console, request, session, "missing.html", status=404, what="audit log")
    key = writer.signer.public_key
    return _page(
        console,
        request,
        session,
        "integrity.html",
        logs=await integrity.log_states(writer.store, key, writer.log_id),
        key=integrity.key_facts(key),
        verified=verified,
        verified_at=dt.datetime.now(dt.UTC) if verified is not None else None,
    )


@router.get("/integrity")
async def integrity_page(request: Request) -> Response:
    return await _integrity(request, None)


@router.post("/integrity/verify")
async def verify_now(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    if writer is None or not check_csrf(session, (await form_fields(request)).get("token")):
        return RedirectResponse(f"{PREFIX}/integrity", 303)
    return await _integrity(
        request, await integrity.verify_logs(writer.store, writer.signer.public_key)
    )


@router.get("/report")
async def report_page(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    writer = console.writer()
    q = request.query_params
    period = residency.default_period(dt.datetime.now(dt.UTC).date())
    tenant = q.get("tenant", "").strip()
    since, until = q.get("since") or period.since, q.get("until") or period.until
    found = None
    problem = None
    if tenant and writer is not None:
        search = records.search_from({"since": since, "until": until})
        problem = search.problem
        if problem is None:
            found = await residency.residency(
                writer.store,
                tenant,
                str(search.scope.since),
                str(search.scope.until),
                console.parts.policy.current.revision,
            )
    return _page(
        console,
        request,
        session,
        "report.html",
        tenant=tenant,
        since=since,
        until=until,
        tenants=sorted(console.parts.policy.current.policy.tenants),
        report=found[0] if found else None,
        covering=found[1] if found else [],
        problem=problem,
    )


@router.get("/policy")
async def policy_page(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    holder = console.parts.policy
    compiled = holder.current
    wanted = request.query_params.get("tenant", "").strip() or None
    return _page(
        console,
        request,
        session,
        "policy.html",
        compiled=compiled,
        loaded_at=holder.loaded_at,
        previous=holder.previous,
        last_reload=console.parts.reloader.last_reload,
        matrix=policy_view.matrix(compiled, wanted),
        wanted=wanted or "",
        changes=policy_view.changes(holder.previous, compiled),
    )
