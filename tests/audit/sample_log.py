"""A small audit log of two tenants, written by the real writer into a real store, and its
exports, for the tests of export and verification."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from gateway.audit.canonical import canonical
from gateway.audit.export import export_log, export_tenant, seal
from gateway.audit.merkle import leaf_hash
from gateway.audit.setup import open_store
from gateway.audit.signing import Signer, generate_private_key_pem, load_private_key
from gateway.audit.store import StoredRecord
from gateway.audit.verify import Report, verify_export
from gateway.audit.writer import AuditWriter

PEM = generate_private_key_pem()
SIGNER = Signer(load_private_key(PEM))
NOW = "2026-12-01T00:00:00.000000Z"
TENANTS = ("alpha", "beta")


def record(i: int, tenant: str) -> dict[str, Any]:
    moment = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)
    return {
        "v": 1,
        "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "tenant": tenant,
        "request_id": f"req-{i}",
        "decision": "allowed",
        "status": 200,
    }


async def _fill(url: str, n: int, log_id: str, every: int, first: int) -> None:
    writer = AuditWriter(
        open_store(url), SIGNER, log_id, checkpoint_every=every, checkpoint_interval_s=3600
    )
    await writer.start()
    try:
        for i in range(first, first + n):  # one batch each: checkpoints every `every` records
            await writer.append(record(i, TENANTS[i % 2]))
    finally:
        await writer.stop()


def fill(url: str, n: int, log_id: str = "replica-a", every: int = 5, first: int = 0) -> None:
    """`n` records alternating between the tenants; checkpoints at the start, every `every`
    records and at the stop."""
    asyncio.run(_fill(url, n, log_id, every, first))


async def _append_unsigned(url: str, log_id: str, n: int) -> None:
    store = open_store(url)
    await store.open()
    try:
        start = len(await store.leaves(log_id)) + (await store.base(log_id)).size
        rows = []
        for seq in range(start, start + n):
            body = record(seq, TENANTS[seq % 2]) | {"log_id": log_id, "seq": seq}
            data = canonical(body)
            rows.append(
                StoredRecord(log_id, seq, body["time"], body["tenant"], leaf_hash(data), data)
            )
        await store.append_batch(rows)
    finally:
        await store.aclose()


def append_unsigned(url: str, n: int, log_id: str = "replica-a") -> None:
    """Records committed with no checkpoint after them, as a gateway killed before its next
    checkpoint leaves them."""
    asyncio.run(_append_unsigned(url, log_id, n))


async def _export(url: str, log_id: str, tenant: str | None, sealed: bool) -> list[bytes]:
    store = open_store(url)
    await store.open()
    try:
        upto = await seal(store, SIGNER, log_id, NOW) if sealed else None
        if tenant:
            lines = await export_tenant(store, log_id, tenant, SIGNER, NOW, upto)
        else:
            lines = await export_log(store, log_id, upto)
        return [line.rstrip(b"\n") for line in lines]
    finally:
        await store.aclose()


def export(
    url: str, log_id: str = "replica-a", tenant: str | None = None, sealed: bool = True
) -> list[bytes]:
    return asyncio.run(_export(url, log_id, tenant, sealed))


def verify(lines: list[bytes]) -> Report:
    return verify_export(lines, SIGNER.public_key)


def kinds(report: Report) -> list[str]:
    return [f.kind for f in report.failures]


def is_record(line: bytes) -> bool:
    return line.startswith(b'{"type":"record"')


def key_files(directory: Path) -> tuple[Path, Path]:
    """The signing key and the public key, as files."""
    from gateway.audit.signing import public_key_pem

    private, public = directory / "signing-key.pem", directory / "public.pem"
    private.write_bytes(PEM)
    private.chmod(0o600)
    public.write_bytes(public_key_pem(SIGNER.public_key))
    return private, public
