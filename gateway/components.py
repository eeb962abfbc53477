"""Everything a running gateway is made of, built once by `create_app` and reached from handlers."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.auth.keys import KeyStore
from gateway.policy.holder import PolicyHolder
from gateway.proxy import Proxy
from gateway.settings import Settings
from gateway.upstream.base import Upstream


@dataclass
class Components:
    settings: Settings
    keys: KeyStore
    policy: PolicyHolder
    upstreams: dict[str, Upstream]
    proxy: Proxy
    ready: bool = False


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found
