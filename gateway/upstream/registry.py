"""One upstream client per configured backend, made on first use from the catalog in force.

Keyed by backend name and everything that decides how the client connects (kind, URL, provider,
region, project, API version, the variables holding credentials), so a reload that adds a backend
or changes how it is reached gets a new client, and a request pinned to an older revision keeps
reaching the backend as that revision described it. Only URLs from the catalog are ever reached:
clients cannot name an upstream.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from gateway.errors import NotImplementedByUpstream
from gateway.policy.schema import Backend, BackendKind, Catalog
from gateway.upstream.base import Upstream
from gateway.upstream.openai_compatible import OpenAICompatibleUpstream, Timeouts
from gateway.upstream.tls import ClientContexts

PROVIDERS_EXTRA = "pip install 'sovereign-gateway[providers]'"


class MissingExtra(Exception):
    """The catalog needs a part of the gateway that this installation left out."""


def litellm_missing(name: str) -> str:
    return (
        f"backend {name} is of kind litellm, which needs the `providers` extra"
        f" (litellm): {PROVIDERS_EXTRA}"
    )


def check_extras(catalog: Catalog) -> None:
    """Refuse, naming the extra, a catalog whose backends this installation cannot reach."""
    needing = [n for n, b in catalog.backends.items() if b.kind is BackendKind.LITELLM]
    if needing and importlib.util.find_spec("litellm") is None:
        raise MissingExtra(litellm_missing(", ".join(needing)))


class Upstreams:
    def __init__(
        self, *, timeouts: Timeouts, pool_size: int, tls: ClientContexts | None = None
    ) -> None:
        self._timeouts = timeouts
        self._pool_size = pool_size
        self._tls = tls if tls is not None else ClientContexts(Path())
        self._clients: dict[tuple[object, ...], Upstream] = {}

    def for_backend(self, name: str, backend: Backend) -> Upstream:
        key = (
            name,
            backend.kind,
            str(backend.base_url),
            backend.provider,
            backend.region,
            backend.project,
            backend.api_version,
            backend.api_key_env,
            tuple(sorted(backend.credentials_env.items())),
            backend.tls,
        )
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._make(name, backend)
        return client

    def _make(self, name: str, backend: Backend) -> Upstream:
        # the key itself never sits in the catalog: the catalog names the variable holding it
        key = os.environ.get(backend.api_key_env) if backend.api_key_env else None
        if backend.kind in (BackendKind.VLLM, BackendKind.OPENAI_COMPATIBLE):
            return OpenAICompatibleUpstream(
                name,
                str(backend.base_url),
                self._timeouts,
                self._pool_size,
                api_key=key,
                ssl_context=self._tls.for_backend(name, backend),
            )
        if backend.kind is BackendKind.LITELLM and importlib.util.find_spec("litellm") is None:
            raise NotImplementedByUpstream(litellm_missing(name))
        if backend.kind is BackendKind.LITELLM and backend.provider:
            from gateway.upstream.litellm_provider import LiteLLMUpstream

            return LiteLLMUpstream(name, backend, self._timeouts.first_byte_s)
        raise NotImplementedByUpstream(
            f"backend {name} is of kind {backend.kind.value}, which this gateway cannot reach yet"
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
