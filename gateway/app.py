"""`create_app(settings)`: builds every component and wires the routers.

Nothing happens on import.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import admin, audit, health, metrics, openai
from gateway.api.json import json_response
from gateway.api.proxied import ProxiedRoutes
from gateway.asgi.request_id import RequestIdMiddleware, RequestIds
from gateway.asgi.types import ASGIApp
from gateway.audit.log import AuditLog
from gateway.audit.setup import build_audit
from gateway.auth.keys import KeyStore
from gateway.components import Components
from gateway.console.app import mount_console
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.limits.gate import Limits
from gateway.limits.memory import MemoryStore
from gateway.limits.redis import RedisStore
from gateway.limits.store import LimitStore
from gateway.observability.metrics import LiveGauges, Metrics
from gateway.observability.observe import RequestObserver
from gateway.policy.compile import CompiledPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.load import policy_files
from gateway.policy.schema import Limits as TenantLimits
from gateway.proxy import Proxy
from gateway.reload import Reloader, ReloadResult, fingerprint
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker
from gateway.routing.monitor import BackendMonitor
from gateway.routing.select import PriorityLeastLoaded
from gateway.settings import Settings
from gateway.upstream.openai_compatible import Timeouts
from gateway.upstream.registry import Upstreams, check_extras
from gateway.upstream.tls import ClientContexts

log = logging.getLogger("gateway.app")


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def build_components(settings: Settings) -> Components:
    metrics = Metrics(settings.metrics_tenant_label, settings.metrics_max_tenants)

    def reloaded(result: ReloadResult) -> None:
        metrics.reloads.labels(result.trigger, "success" if result.ok else "failure").inc()
        metrics.last_reload_ok.set(1 if result.ok else 0)
        metrics.policy.info({"revision": result.revision})

    keys_file = settings.resolved_keys_file()
    seen = fingerprint(policy_files(settings.policy_dir), (keys_file,))  # before they are read
    keys = KeyStore.from_file(keys_file, settings.policy_dir)
    policy = PolicyHolder(settings.policy_dir, _today)
    reloader = Reloader(
        policy,
        keys,
        watch_interval_s=settings.policy_watch_interval_s,
        on_reload=reloaded,
        seen=seen,
    )
    metrics.policy.info({"revision": policy.current.revision})
    timeouts = Timeouts(
        connect_s=settings.connect_timeout_s,
        first_byte_s=settings.first_byte_timeout_s,
        idle_s=settings.idle_timeout_s,
    )
    check_extras(policy.current.policy.catalog)
    tls = ClientContexts(settings.policy_dir)
    tls.prepare(policy.current.policy.catalog.backends)
    upstreams = Upstreams(timeouts=timeouts, pool_size=settings.pool_size_per_backend, tls=tls)
    limits = build_limits(settings, metrics, policy.current)
    load = LoadTracker()
    health = HealthTracker(
        consecutive_failures=settings.outlier_consecutive_failures,
        base_ejection_s=settings.outlier_base_ejection_s,
        max_ejection_s=settings.outlier_max_ejection_s,
        on_ejection=lambda e: metrics.ejections.labels(e.deployment).inc(),
        tenants_for_all=settings.outlier_tenants_for_all,
    )
    monitor = BackendMonitor(
        policy=lambda: policy.current,
        health=health,
        load=load,
        probe_interval_s=settings.health_probe_interval_s,
        metrics_interval_s=settings.vllm_metrics_interval_s,
        timeout_s=settings.health_probe_timeout_s,
        tls=tls.for_backend,
    )
    audit = build_audit(settings, metrics.audit_batch_committed)
    observer = RequestObserver(metrics, settings.access_log)
    metrics.watch(
        LiveGauges(
            outstanding=load.snapshot,
            audit=lambda: _audit_gauges(audit),
            healthy=lambda: health.snapshot(policy.current.policy.catalog.deployments),
            vllm=load.vllm_snapshot,
        )
    )
    proxy = Proxy(
        policy=policy,
        upstreams=upstreams,
        selector=PriorityLeastLoaded(load),
        load=load,
        health=health,
        limits=limits,
        audit=audit,
        observe=observer.observe,
        max_attempts=settings.max_attempts,
        deadline_s=settings.request_deadline_s,
        stream_first_byte_s=settings.stream_first_byte_timeout_s,
    )
    return Components(
        settings=settings,
        keys=keys,
        policy=policy,
        reloader=reloader,
        upstreams=upstreams,
        proxy=proxy,
        audit=audit,
        metrics=metrics,
        health=health,
        monitor=monitor,
        limits=limits,
    )


def build_limits(settings: Settings, metrics: Metrics, compiled: CompiledPolicy) -> Limits:
    """The limits store the settings name, and the start-up warnings an operator must see."""
    store: LimitStore
    if settings.limits_store == "memory":
        store = MemoryStore(settings.limits_lease_s)
        budgets = [t for t, p in compiled.policy.tenants.items() if _has_budget(p.limits)]
        if budgets:
            log.warning(
                "limits_store is memory: the monthly token budgets of %s start again from zero"
                " whenever this process restarts, and each process counts alone; set"
                " limits_store: redis://... to keep them",
                ", ".join(sorted(budgets)),
            )
    else:
        store = RedisStore(
            url=settings.limits_store,
            prefix=settings.limits_key_prefix,
            timeout_s=settings.limits_timeout_s,
            lease_s=settings.limits_lease_s,
            on_error=lambda operation: metrics.limits_store_errors.labels(operation).inc(),
        )
    if settings.limits_fail_open:
        log.warning(
            "LIMITS FAIL OPEN: when the limits store cannot be reached, requests go through"
            " WITHOUT rate limits, concurrency limits or token budgets"
            " (counted in sgw_limits_fail_open_total); set limits_fail_open: false to refuse them"
        )
    return Limits(store, settings.limits_fail_open, metrics.limits_fail_open.inc)


def _has_budget(limits: TenantLimits) -> bool:
    return limits.tokens_per_month is not None or any(
        k.tokens_per_month is not None for k in limits.keys.values()
    )


def _audit_gauges(audit: AuditLog) -> dict[str, float] | None:
    writer = audit.writer
    if writer is None:
        return None
    return {
        "sgw_audit_writer_up": 1.0 if writer.accepting else 0.0,
        "sgw_audit_backlog_records": float(writer.backlog),
        "sgw_audit_log_size_records": float(writer.size),
        "sgw_audit_last_checkpoint_timestamp_seconds": writer.last_checkpoint_at,
    }


def create_app(settings: Settings) -> ASGIApp:
    """The gateway as one ASGI app: the proxied routes in front, the FastAPI app for the rest."""
    parts = build_components(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if parts.audit.writer is not None:
            await parts.audit.writer.start()
        await parts.limits.store.start()
        parts.reloader.start()
        parts.monitor.start()
        parts.ready = True
        try:
            yield
        finally:
            parts.ready = False
            await parts.reloader.stop()
            await parts.monitor.stop()
            await parts.audit.drain()
            if parts.audit.writer is not None:
                await parts.audit.writer.stop()
            await parts.upstreams.aclose()
            await parts.limits.store.aclose()

    app = FastAPI(
        title="Sovereign Gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.components = parts
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    mount_console(app, parts)
    app.add_api_route(settings.metrics_path, metrics.scrape, methods=["GET"])
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)
    ids = RequestIds()
    app.add_middleware(RequestIdMiddleware, ids=ids)
    # in front of the framework, not inside it: the proxied routes pay for none of its layers
    return ProxiedRoutes(app, parts, ids)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return json_response(exc.envelope(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: GatewayError
    if exc.status_code == 404:
        error = NotFound(f"Unknown path {request.url.path}")
    else:
        error = InvalidRequest(str(exc.detail), code=f"http_{exc.status_code}")
        error.status = exc.status_code
    return json_response(error.envelope(), error.status, headers=dict(exc.headers or {}))
