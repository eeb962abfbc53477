"""Which simulated backends a catalog needs: every loopback backend, serving its deployments."""

from __future__ import annotations

from gateway.policy.schema import BackendKind, Catalog

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def simulated_backends(catalog: Catalog) -> list[tuple[str, int, list[str]]]:
    specs: list[tuple[str, int, list[str]]] = []
    for name, backend in catalog.backends.items():
        url = backend.base_url
        if backend.kind == BackendKind.LITELLM or url.host not in LOOPBACK or url.port is None:
            continue
        models = sorted({d.upstream_model for d in catalog.deployments if d.backend == name})
        specs.append((name, url.port, models))
    return specs
