"""The policy admin API, for keys with the admin role: state, reload, explain."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json import json_response
from gateway.api.params import date, read_params, text
from gateway.auth.schema import Role
from gateway.components import components
from gateway.errors import InvalidRequest
from gateway.policy.compile import CompiledPolicy
from gateway.policy.explain import explain_route

router = APIRouter(prefix="/admin")


@router.get("/policy")
async def policy_state(request: Request) -> Response:
    parts = components(request)
    parts.keys.authenticate(request.headers.get("authorization"), Role.ADMIN)
    read_params(request.query_params, {})
    compiled = parts.policy.current
    last = parts.reloader.last_reload
    return json_response(
        {
            "revision": compiled.revision,
            "directory": parts.policy.directory.name,
            "evaluated_on": compiled.compiled_on.isoformat(),
            "valid_until": compiled.valid_until.isoformat() if compiled.valid_until else None,
            "tenants": len(compiled.policy.tenants),
            "deployments": len(compiled.policy.catalog.deployments),
            "last_reload": last.as_json() if last else None,
            "reloads": dict(parts.reloader.reloads),
        }
    )


@router.post("/policy/reload")
async def policy_reload(request: Request) -> Response:
    parts = components(request)
    parts.keys.authenticate(request.headers.get("authorization"), Role.ADMIN)
    read_params(request.query_params, {})
    result = await parts.reloader.reload("admin_api")
    if result.ok:
        return json_response(result.as_json())
    error = InvalidRequest(
        f"The policy files do not validate; revision {result.revision} stays in force",
        code="policy_invalid",
        details={"problems": [str(p) for p in result.problems], "revision": result.revision},
    )
    error.status = 422
    return json_response(error.envelope(), error.status)


@router.get("/policy/explain")
async def policy_explain(request: Request) -> Response:
    parts = components(request)
    parts.keys.authenticate(request.headers.get("authorization"), Role.ADMIN)
    query = read_params(
        request.query_params, {"tenant": text, "model": text, "data_class": text, "at": date}
    )
    for required in ("tenant", "model"):
        if required not in query:
            raise InvalidRequest(
                "`tenant` and `model` query parameters are required",
                param=required,
                code="missing_parameter",
            )
    compiled = parts.policy.current
    if "at" in query:
        compiled = CompiledPolicy(compiled.policy, query["at"])
    return json_response(
        explain_route(compiled, query["tenant"], query["model"], query.get("data_class"))
    )


@router.get("/audit")
async def audit_state(request: Request) -> Response:
    """The audit writer: log id, size, backlog, and its group-commit batches so far."""
    parts = components(request)
    parts.keys.authenticate(request.headers.get("authorization"), Role.ADMIN)
    read_params(request.query_params, {})
    writer = parts.audit.writer
    if writer is None:
        return json_response({"enabled": False})
    stats = writer.stats
    sizes = sorted(stats.batch_sizes)
    commits = sorted(stats.commit_seconds)

    def pct(values: list[float] | list[int], q: float) -> float | None:
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    return json_response(
        {
            "enabled": True,
            "log_id": writer.log_id,
            "accepting": writer.accepting,
            "size": writer.size,
            "backlog": writer.backlog,
            "records": stats.records,
            "batches": stats.batches,
            "failed_batches": stats.failed_batches,
            "checkpoints": stats.checkpoints,
            "batch_size": {
                "mean": stats.records / stats.batches if stats.batches else None,
                "p50": pct(sizes, 0.5),
                "p99": pct(sizes, 0.99),
                "max": pct(sizes, 1.0),
            },
            "commit_ms": {
                "p50": (pct(commits, 0.5) or 0) * 1000,
                "p99": (pct(commits, 0.99) or 0) * 1000,
            },
        }
    )
