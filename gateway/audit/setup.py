"""Build the audit log from settings: the store from its URL, the signing key, the log id."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from gateway.audit.log import AuditLog
from gateway.audit.signing import Signer, generate_private_key_pem, load_private_key
from gateway.audit.store import AuditStore
from gateway.audit.writer import AuditWriter
from gateway.files import make_private_dirs
from gateway.settings import Settings

log = logging.getLogger("gateway.audit")


def open_store(url: str, log_id: str | None = None) -> AuditStore:
    """The store at `url`; with `log_id`, the store of that log's writer, which holds the log
    under a lock while it is open (a second writer of the same log fails to open it)."""
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.audit.store_postgres import PostgresStore

        return PostgresStore(url, log_id=log_id)
    if url.startswith("sqlite:"):
        from gateway.audit.store_sqlite import SQLiteStore

        path = Path(url.removeprefix("sqlite:").removeprefix("//"))
        return SQLiteStore(path, log_id=log_id)
    raise ValueError(f"audit_store must be sqlite:PATH or a postgresql:// DSN, not {url!r}")


def signer_from_settings(settings: Settings) -> Signer:
    if settings.audit_signing_key is not None:
        return Signer(load_private_key(settings.audit_signing_key.get_secret_value().encode()))
    path = settings.audit_signing_key_file
    if not path.exists():
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(generate_private_key_pem())
        log.warning(
            "created a new audit signing key; export its public key for auditors with"
            " `sovereign-gateway audit public-key`",
            extra={"event": "audit_key_created", "path": str(path)},
        )
    return Signer.from_file(path)


def audit_log_id(settings: Settings) -> str:
    """This replica's log: the configured id, or `<hostname>-<port>`."""
    return settings.audit_log_id or f"{socket.gethostname()}-{settings.port}"


def build_audit(
    settings: Settings, on_batch: Callable[[int, float], None] | None = None
) -> AuditLog:
    if not settings.audit_enabled:
        return AuditLog(None)
    log_id = audit_log_id(settings)
    writer = AuditWriter(
        open_store(settings.audit_store, log_id),
        signer_from_settings(settings),
        log_id,
        batch_max=settings.audit_batch_max,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_interval_s=settings.audit_checkpoint_interval_s,
        on_batch=on_batch,
        commit_timeout_s=settings.audit_timeout_s,
    )
    return AuditLog(writer, timeout_s=settings.audit_timeout_s)
