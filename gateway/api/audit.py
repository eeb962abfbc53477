"""The read-only audit API, for keys with the auditor role (or admin): records, checkpoints,
exports with proofs, the public key and the report."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json import json_response
from gateway.audit.export import ExportError, export_log, export_tenant
from gateway.audit.query import RecordFilter
from gateway.audit.report import build_report
from gateway.audit.signing import public_key_pem
from gateway.audit.store import AuditStore, Query
from gateway.audit.writer import AuditWriter
from gateway.components import components
from gateway.errors import InvalidRequest, NotFound
from gateway.policy.schema import Role

router = APIRouter(prefix="/audit")
JSONL = "application/x-ndjson"


def _writer(request: Request) -> AuditWriter:
    parts = components(request)
    parts.keys.authenticate(request.headers.get("authorization"), Role.AUDITOR, Role.ADMIN)
    if parts.audit.writer is None:
        raise NotFound("The audit log is turned off on this gateway", code="audit_off")
    return parts.audit.writer


def _store(request: Request) -> AuditStore:
    return _writer(request).store


@router.get("/records")
async def records(request: Request) -> Response:
    store = _store(request)
    q = request.query_params
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError as exc:
        raise InvalidRequest("`limit` must be an integer", param="limit") from exc
    found = await store.read(
        Query(tenant=q.get("tenant"), since=q.get("since"), until=q.get("until"))
    )
    wanted = RecordFilter.from_mapping(q)
    out = [r for r in (orjson.loads(s.body) for s in found) if wanted.matches(r)][:limit]
    return json_response({"object": "list", "data": out})


@router.get("/checkpoints/latest")
async def latest_checkpoint(request: Request) -> Response:
    writer = _writer(request)
    checkpoints = await writer.store.checkpoints(writer.log_id)
    if not checkpoints:
        raise NotFound("No checkpoint yet", code="no_checkpoint")
    latest = max(checkpoints, key=lambda cp: (cp.size, cp.time))
    return json_response(latest.as_json())


@router.get("/public-key")
async def public_key(request: Request) -> Response:
    writer = _writer(request)
    return Response(public_key_pem(writer.signer.public_key), media_type="application/x-pem-file")


@router.get("/export")
async def export(request: Request) -> Response:
    writer = _writer(request)
    tenant = request.query_params.get("tenant")
    try:
        lines = (
            await export_tenant(writer.store, writer.log_id, tenant)
            if tenant
            else await export_log(writer.store, writer.log_id)
        )
    except ExportError as exc:
        raise InvalidRequest(str(exc), code="export_impossible") from exc
    return Response(b"".join(lines), media_type=JSONL)


@router.get("/report")
async def report(request: Request) -> Response:
    writer = _writer(request)
    q = request.query_params
    found = await build_report(
        writer.store,
        q.get("since"),
        q.get("until"),
        writer.signer.public_key,
        tenant=q.get("tenant") or None,
        log_ids=q.getlist("log_id") or None,
        revision_in_force=components(request).policy.current.revision,
    )
    s = found.summary
    return json_response(
        {
            "since": found.since,
            "until": found.until,
            "tenant": found.tenant,
            "logs": found.logs,
            "generated_at": found.generated_at,
            "revision_in_force": found.revision_in_force,
            "total": s.total,
            "decisions": dict(s.decisions),
            "inference_countries": dict(s.countries),
            "operator_jurisdictions": dict(s.jurisdictions),
            "weights_origins": dict(s.weights),
            "refusals_by_rule": dict(s.refusal_rules),
            "refusals_by_tenant": dict(s.refusal_tenants),
            "errors": dict(s.errors),
            "revisions": {r: seen.records for r, seen in s.revisions.items()},
            "verification": found.verification,
        }
    )
