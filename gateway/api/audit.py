"""The read-only audit API, for keys with the auditor role (or admin): records, checkpoints,
exports with proofs, the public key and the report. Query parameters are checked
(`params.py`) after the key, so an unauthenticated caller learns nothing from them."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json import json_response
from gateway.api.params import choice, integer, moment, read_params, text
from gateway.audit.export import ExportError, export_log, export_tenant, latest_checkpoint
from gateway.audit.query import DECISIONS, FIELDS, RecordFilter, requests_of
from gateway.audit.record import rfc3339
from gateway.audit.report import build_report
from gateway.audit.signing import Checkpoint, public_key_pem
from gateway.audit.store import AuditStore, Query, StoreUnavailable
from gateway.audit.writer import AuditWriter
from gateway.auth.schema import Role
from gateway.components import components
from gateway.errors import AuditUnavailable, InvalidRequest, NotFound

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


RECORDS_MAX = 10_000
PERIOD = {"since": moment, "until": moment}
RECORD_PARAMS = {
    "tenant": text,
    **PERIOD,
    "limit": integer(1, RECORDS_MAX),
    **{name: text for name in FIELDS},
    "decision": choice(*DECISIONS),
}


def _period(params: dict[str, Any]) -> dict[str, Any]:
    since, until = params.get("since"), params.get("until")
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("`until` must come after `since`", param="until", code="invalid_value")
    return params


@router.get("/records")
async def records(request: Request) -> Response:
    store = _store(request)
    q = _period(read_params(request.query_params, RECORD_PARAMS))
    found = await store.read(
        Query(tenant=q.get("tenant"), since=q.get("since"), until=q.get("until"))
    )
    wanted = RecordFilter.from_mapping(q)
    limit = q.get("limit", 1000)
    merged = requests_of(orjson.loads(s.body) for s in found)
    out = [r for r in merged if wanted.matches(r)][:limit]
    return json_response({"object": "list", "data": out})


@router.get("/checkpoints/latest")
async def latest(request: Request) -> Response:
    writer = _writer(request)
    read_params(request.query_params, {})
    checkpoint = await latest_checkpoint(writer.store, writer.log_id)
    if checkpoint is None:
        raise NotFound("No checkpoint yet", code="no_checkpoint")
    return json_response(checkpoint.as_json())


@router.get("/public-key")
async def public_key(request: Request) -> Response:
    writer = _writer(request)
    read_params(request.query_params, {})
    return Response(public_key_pem(writer.signer.public_key), media_type="application/x-pem-file")


async def fresh_checkpoint(writer: AuditWriter) -> Checkpoint:
    """A checkpoint of every record committed so far, signed by the writer itself if the latest
    one does not cover them all, so that the export holds nothing unsigned."""
    try:
        checkpoint = await latest_checkpoint(writer.store, writer.log_id)
        if checkpoint is None or checkpoint.size < writer.size:
            await writer.checkpoint()
            checkpoint = await latest_checkpoint(writer.store, writer.log_id)
    except StoreUnavailable as exc:
        raise AuditUnavailable(
            "The audit store cannot be read or signed now", headers={"retry-after": "5"}
        ) from exc
    assert checkpoint is not None
    return checkpoint


@router.get("/export")
async def export(request: Request) -> Response:
    writer = _writer(request)
    tenant = read_params(request.query_params, {"tenant": text}).get("tenant")
    checkpoint = await fresh_checkpoint(writer)
    store, log_id = writer.store, writer.log_id
    try:
        lines = (
            await export_tenant(
                store, log_id, tenant, writer.signer, rfc3339(time.time()), checkpoint
            )
            if tenant
            else await export_log(store, log_id, checkpoint)
        )
    except ExportError as exc:
        raise InvalidRequest(str(exc), code="export_impossible") from exc
    return Response(b"".join(lines), media_type=JSONL)


@router.get("/report")
async def report(request: Request) -> Response:
    writer = _writer(request)
    q = _period(read_params(request.query_params, {**PERIOD, "tenant": text, "log_id": text}))
    found = await build_report(
        writer.store,
        q.get("since"),
        q.get("until"),
        writer.signer.public_key,
        tenant=q.get("tenant") or None,
        log_ids=[q["log_id"]] if "log_id" in q else None,
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
