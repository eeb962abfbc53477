"""Start-up failures an operator can fix, turned into one readable message."""

from __future__ import annotations

from gateway.auth.keys import KeysFileError
from gateway.policy.load import PolicyLoadError
from gateway.upstream.registry import MissingExtra
from gateway.upstream.tls import BackendTLSError


def startup_error(exc: Exception) -> str | None:
    if isinstance(exc, KeysFileError):
        return "the keys file does not validate:\n" + "\n".join(str(p) for p in exc.problems)
    if isinstance(exc, PolicyLoadError):
        return "the policy does not validate:\n" + "\n".join(str(p) for p in exc.problems)
    if isinstance(exc, MissingExtra | BackendTLSError):
        return str(exc)
    return None
