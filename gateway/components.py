"""Everything a running gateway is made of, built once by `create_app` and reached from handlers."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.audit.log import AuditLog
from gateway.auth.keys import KeyStore
from gateway.limits.gate import Limits
from gateway.observability.metrics import Metrics
from gateway.policy.holder import PolicyHolder
from gateway.proxy import Proxy
from gateway.reload import Reloader
from gateway.routing.health import HealthTracker
from gateway.routing.monitor import BackendMonitor
from gateway.settings import Settings
from gateway.upstream.registry import Upstreams


@dataclass(kw_only=True)
class Components:
    settings: Settings
    keys: KeyStore
    policy: PolicyHolder
    reloader: Reloader
    upstreams: Upstreams
    proxy: Proxy
    audit: AuditLog
    metrics: Metrics
    health: HealthTracker
    monitor: BackendMonitor
    limits: Limits
    ready: bool = False


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found
