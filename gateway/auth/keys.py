"""API keys: `sk-sgw-<id>-<secret>`; only the SHA-256 of the whole key is stored.

The id part finds the entry, the hash is compared in constant time, and only the id ever appears in
logs, metrics or audit records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.auth.schema import ApiKeyEntry, KeysFile, Role
from gateway.errors import AuthenticationFailed, ExpiredApiKey, PermissionDenied
from gateway.problems import InvalidFiles, Problem
from gateway.yamlfile import label_of, load_file, locate

PREFIX = "sk-sgw-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the id of the key used (never the key)."""

    tenant: str
    key_id: str
    role: Role = Role.TENANT


class KeysFileError(InvalidFiles):
    """The keys file does not validate; `problems` says where and why (file, line, field)."""


def read_keys_file(path: Path, root: Path | None = None) -> list[ApiKeyEntry]:
    """The entries of a keys file, each key id and each hash listed once; problems are named
    relative to `root` (the policy directory)."""
    root = root or path.parent
    entries = load_file(root, path, KeysFile, KeysFileError).keys
    problems = _listed_twice(entries, root, path)
    if problems:
        raise KeysFileError(problems)
    return entries


def check_keys_file(path: Path, root: Path, has_tenant: Callable[[str], bool]) -> list[Problem]:
    """What `policy check` says of a keys file (nothing if there is none): why it does not
    validate, or else a warning for each key of a tenant that `has_tenant` does not know (a
    tenant without a policy)."""
    if not path.is_file():
        return []
    try:
        keys = read_keys_file(path, root)
    except KeysFileError as exc:
        return list(exc.problems)
    label = label_of(root, path)
    return [
        locate(
            root,
            label,
            ("keys", str(i), "tenant"),
            f"key {entry.id} belongs to tenant {entry.tenant!r}, which has no policy",
            "warning",
        )
        for i, entry in enumerate(keys)
        if entry.tenant is not None and not has_tenant(entry.tenant)
    ]


def _listed_twice(entries: list[ApiKeyEntry], root: Path, path: Path) -> list[Problem]:
    """A key id or hash listed twice: which entry holds would be a guess (a second entry with
    `disabled: true` would not revoke the first), so the whole file is refused."""
    label = label_of(root, path)
    problems: list[Problem] = []
    ids: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for i, entry in enumerate(entries):
        for field, seen, what in (("id", ids, f"key id {entry.id}"), ("sha256", hashes, "hash")):
            value = getattr(entry, field)
            if value not in seen:
                seen[value] = i
                continue
            first = seen[value]
            line = locate(root, label, ("keys", str(first), field), "", "error").line
            problems.append(
                locate(
                    root,
                    label,
                    ("keys", str(i), field),
                    f"this {what} is already listed at line {line} (keys.{first},"
                    f" key id {entries[first].id}); each key has one entry: to revoke a key,"
                    " set `disabled: true` on that entry or remove it",
                    "error",
                )
            )
    return problems


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
    """The keys in force. A key's `expires` is checked against the clock at each request (one
    comparison with a number kept beside the entry), so a key expires on time without a reload."""

    def __init__(
        self,
        entries: list[ApiKeyEntry],
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._by_id = {
            e.id: (e, e.expires.timestamp() if e.expires else math.inf)
            for e in entries
            if not e.disabled
        }

    @classmethod
    def from_file(
        cls, path: Path, root: Path | None = None, clock: Callable[[], float] = time.time
    ) -> KeyStore:
        """The keys of `path`, named relative to `root` (the policy directory) in problems."""
        return cls(read_keys_file(path, root), path, clock)

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
        found = self._by_id.get(key_id)
        if found is None or self._clock() >= found[1]:
            return None
        entry = found[0]
        return Principal(entry.tenant or "", entry.id, entry.role)

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
        found = self._by_id.get(key_id) if key_id else None
        expected = found[0].sha256 if found else "0" * 64
        if not hmac.compare_digest(hash_key(key), expected) or found is None:
            raise AuthenticationFailed("Incorrect API key provided")
        entry, expires = found
        if self._clock() >= expires:
            raise ExpiredApiKey(
                f"This API key expired at {format_time(entry.expires)}: use the key that"
                " replaced it, or ask your administrator for a new one"
            )
        return Principal(entry.tenant or "", entry.id, entry.role)


def format_time(at: dt.datetime | None) -> str:
    """A keys file time as the CLI writes it and as an error names it: UTC, to the second."""
    if at is None:
        return ""
    return at.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
