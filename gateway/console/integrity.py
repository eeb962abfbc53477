"""The integrity page: each log's size and latest signed checkpoint, the public key, and a
verification run on the server that is the one `audit verify` runs on an export."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.export import export_log
from gateway.audit.signing import key_id, public_key_pem
from gateway.audit.store import AuditStore
from gateway.audit.verify import verify_export


@dataclass
class LogState:
    log_id: str
    size: int
    pruned_below: int
    checkpoints: int
    latest: dict[str, Any] | None
    latest_signed_by_us: bool
    ours: bool  # the log this gateway writes


@dataclass
class Verification:
    log_id: str
    ok: bool
    records: int
    checkpoints: int
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def key_facts(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).hexdigest()
    return {
        "pem": public_key_pem(key).decode(),
        "key_id": key_id(key),
        "fingerprint": ":".join(digest[i : i + 4] for i in range(0, len(digest), 4)),
    }


async def log_states(store: AuditStore, key: Ed25519PublicKey, own: str) -> list[LogState]:
    states = []
    for log_id in await store.log_ids():
        checkpoints = await store.checkpoints(log_id)
        latest = max(checkpoints, key=lambda c: (c.size, c.time)) if checkpoints else None
        states.append(
            LogState(
                log_id=log_id,
                size=await store.size(log_id),
                pruned_below=(await store.base(log_id)).size,
                checkpoints=len(checkpoints),
                latest=latest.as_json() if latest else None,
                latest_signed_by_us=latest is not None and latest.verify(key),
                ours=log_id == own,
            )
        )
    return states


async def verify_logs(store: AuditStore, key: Ed25519PublicKey) -> list[Verification]:
    """Export each log and verify the export, off the event loop."""
    out = []
    for log_id in await store.log_ids():
        lines = list(await export_log(store, log_id))
        report = await asyncio.to_thread(verify_export, lines, key)
        out.append(
            Verification(
                log_id,
                report.ok,
                report.records,
                report.checkpoints,
                [str(f) for f in report.failures],
                list(report.notes),
            )
        )
    return out
