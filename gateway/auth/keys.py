"""API keys: `sk-sgw-<id>-<secret>`; only the SHA-256 of the whole key is stored.

The id part finds the entry, the hash is compared in constant time, and only the id ever appears in
logs, metrics or audit records.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.policy.load import PolicyLoadError, load_file
from gateway.policy.schema import ApiKeyEntry, KeysFile, Role

PREFIX = "sk-sgw-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the id of the key used (never the key)."""

    tenant: str
    key_id: str
    role: Role = Role.TENANT


class KeysFileError(PolicyLoadError):
    """The keys file does not validate; `problems` says where and why (file, line, field)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """Return (key id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}-{secrets.token_urlsafe(24)}"


def key_id_of(key: str) -> str | None:
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("-")
    return key_id if sep and secret else None


class KeyStore:
    def __init__(self, entries: list[ApiKeyEntry], path: Path | None = None) -> None:
        self.path = path
        self._by_id = {e.id: e for e in entries if not e.disabled}

    @classmethod
    def from_file(cls, path: Path, root: Path | None = None) -> KeyStore:
        """The keys of `path`, named relative to `root` (the policy directory) in problems."""
        try:
            entries = load_file(root or path.parent, path, KeysFile).keys
        except PolicyLoadError as exc:
            raise KeysFileError(exc.problems) from exc
        return cls(entries, path)

    def swap(self, reloaded: KeyStore) -> None:
        """Take the keys of `reloaded` all at once: a key removed or disabled is refused from the
        next request on; requests already authenticated go on."""
        self._by_id = reloaded._by_id

    def authenticate(self, authorization: str | None, *roles: Role) -> Principal:
        """The caller behind an Authorization header, who must hold one of `roles`."""
        principal = self._authenticate(authorization)
        if principal.role not in (roles or (Role.TENANT,)):
            wanted = " or ".join(r.value for r in roles or (Role.TENANT,))
            raise PermissionDenied(f"This endpoint needs a key with the {wanted} role")
        return principal

    def principal(self, key_id: str) -> Principal | None:
        """Who holds the key `key_id` now (None once it is removed or disabled)."""
        entry = self._by_id.get(key_id)
        return Principal(entry.tenant or "", entry.id, entry.role) if entry else None

    def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer sk-sgw-...'"
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <API key>'")
        key_id = key_id_of(key)
        entry = self._by_id.get(key_id) if key_id else None
        expected = entry.sha256 if entry else "0" * 64
        if not hmac.compare_digest(hash_key(key), expected) or entry is None:
            raise AuthenticationFailed("Incorrect API key provided")
        return Principal(entry.tenant or "", entry.id, entry.role)
