"""TLS towards backends: the context for a backend's `tls` entry (private CA, client certificate).

One context per distinct entry, made on first use and shared by the backend's connection pool and
its health and load probes. A backend without `tls` is verified against the system's trust store
(or `SSL_CERT_FILE`), as any HTTPS client does.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from gateway.policy.schema import Backend, BackendTLS


class BackendTLSError(Exception):
    """A backend's CA bundle, certificate or key cannot be read or does not match."""


class ClientContexts:
    def __init__(self, base_dir: Path) -> None:
        self._base = base_dir  # relative paths in the catalog are taken from the policy directory
        self._contexts: dict[BackendTLS, ssl.SSLContext] = {}

    def prepare(self, backends: Mapping[str, Backend]) -> None:
        """Make every backend's context now, so that a missing file stops the start-up."""
        for name, backend in backends.items():
            self.for_backend(name, backend)

    def for_backend(self, name: str, backend: Backend) -> ssl.SSLContext | None:
        if backend.tls is None:
            return None
        context = self._contexts.get(backend.tls)
        if context is None:
            context = self._contexts[backend.tls] = self._make(name, backend.tls)
        return context

    def _make(self, name: str, tls: BackendTLS) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self._path(tls.ca_file))
            if tls.cert_file is not None:
                context.load_cert_chain(self._base / tls.cert_file, self._path(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise BackendTLSError(f"backend {name}: its `tls` files cannot be used: {exc}") from exc
        return context

    def _path(self, value: str | None) -> str | None:
        return None if value is None else str(self._base / value)
