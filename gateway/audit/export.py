"""Export the audit log as JSON Lines that `verify` checks offline.

An export ends at a checkpoint (by default the latest), so a signature covers every record in it;
`audit export` and `GET /audit/export` have a fresh one signed first, so an export holds the log
as it was when asked for. Records committed after that checkpoint (a stream that ends meanwhile,
say) wait for the next export.

A whole-log export is, per log: a header, the base frontier if old epochs were pruned, then every
record in order with each checkpoint placed right after the record that completes its size. A
tenant export holds that tenant's records only, each with its RFC 6962 inclusion proof against
the checkpoint, and a statement signed at export time of how many records the tenant has below
it and what they hash to (`statement.py`), so the tenant's auditor can tell the export is whole
without seeing anyone else's records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from gateway.audit.merkle import Tree
from gateway.audit.signing import Checkpoint, Signer
from gateway.audit.statement import sign_statement
from gateway.audit.store import AuditStore, Query

FORMAT = "sovereign-gateway-audit/1"


class ExportError(Exception):
    pass


def line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document) + b"\n"


async def latest_checkpoint(store: AuditStore, log_id: str) -> Checkpoint | None:
    checkpoints = await store.checkpoints(log_id)
    return max(checkpoints, key=lambda cp: (cp.size, cp.time)) if checkpoints else None


async def seal(store: AuditStore, signer: Signer, log_id: str, now: str) -> Checkpoint:
    """A checkpoint of every record stored in `log_id`, for an export made outside the gateway.

    It signs what a writer signs when it starts on that log (the stored leaves, from the base),
    so a live writer's checkpoints agree with it; it signs nothing that does not reproduce the
    log's earlier signed roots, nor with a key other than the log's. The latest checkpoint is
    reused when it already covers every stored record.
    """
    checkpoints = await store.checkpoints(log_id)
    base = await store.base(log_id)
    roots: dict[int, set[str]] = {}
    for cp in checkpoints:
        if cp.size > base.size:
            roots.setdefault(cp.size, set()).add(cp.root)
    frontier = base.copy()
    for leaf in await store.leaves(log_id):
        frontier.append(leaf)
        signed = roots.get(frontier.size)
        if signed is not None and signed != {frontier.root().hex()}:
            raise ExportError(
                f"log {log_id}: the stored records do not hash to the signed root of the"
                f" checkpoint of size {frontier.size}; nothing new is signed"
            )
    latest = max(checkpoints, key=lambda cp: (cp.size, cp.time)) if checkpoints else None
    if latest is not None:
        if latest.size > frontier.size:
            raise ExportError(
                f"log {log_id}: {frontier.size} records are stored, but a checkpoint of size"
                f" {latest.size} was signed; nothing new is signed"
            )
        if latest.key_id != signer.key_id:
            raise ExportError(
                f"log {log_id} is signed with key {latest.key_id}, not with this signing key"
                f" ({signer.key_id})"
            )
        if latest.size == frontier.size:
            return latest
    checkpoint = signer.sign(log_id, frontier.size, frontier.root(), now)
    await store.checkpoint(checkpoint)
    return checkpoint


async def export_log(
    store: AuditStore, log_id: str, upto: Checkpoint | None = None
) -> Iterator[bytes]:
    """The log up to `upto` (default: its latest checkpoint); nothing unsigned."""
    base = await store.base(log_id)
    upto = upto or await latest_checkpoint(store, log_id)
    end = upto.size if upto is not None else base.size
    records = [r for r in await store.read(Query(log_id=log_id)) if r.seq < end]
    out = [line({"type": "header", "format": FORMAT, "scope": "log", "log_id": log_id})]
    if base.size:
        out.append(line({"type": "base", "frontier": base.to_json()}))
    by_size: dict[int, list[Checkpoint]] = {}
    for cp in await store.checkpoints(log_id):
        if cp.size <= end:
            by_size.setdefault(cp.size, []).append(cp)
    for size in sorted(s for s in by_size if s <= base.size):
        out.extend(line({"type": "checkpoint", "checkpoint": cp.as_json()}) for cp in by_size[size])
    for record in records:
        out.append(b'{"type":"record","record":' + record.body + b"}\n")
        for cp in by_size.get(record.seq + 1, ()):
            out.append(line({"type": "checkpoint", "checkpoint": cp.as_json()}))
    return iter(out)


async def export_tenant(
    store: AuditStore,
    log_id: str,
    tenant: str,
    signer: Signer,
    now: str,
    upto: Checkpoint | None = None,
) -> Iterator[bytes]:
    """The tenant's records below `upto` (default: the latest checkpoint), with proofs and a
    statement signed by `signer` (the key of the log's checkpoints)."""
    header = {"type": "header", "format": FORMAT, "scope": "tenant", "log_id": log_id}
    header["tenant"] = tenant
    checkpoint = upto or await latest_checkpoint(store, log_id)
    if checkpoint is None:
        raise ExportError(f"log {log_id} has no checkpoint yet")
    base = await store.base(log_id)
    if checkpoint.size < base.size:
        raise ExportError(
            f"log {log_id} was pruned up to {base.size}, past its latest checkpoint"
            f" ({checkpoint.size}); no signed root covers its records"
        )
    # after pruning, the base's subtree roots stand in for the records that are gone
    leaves = (await store.leaves(log_id))[: checkpoint.size - base.size]
    tree = Tree(leaves, base)
    if tree.size != checkpoint.size or tree.root().hex() != checkpoint.root:
        raise ExportError(
            f"log {log_id}: the stored records do not hash to the signed root of the checkpoint"
            f" of size {checkpoint.size}; no statement is signed"
        )
    records = [
        r for r in await store.read(Query(log_id=log_id, tenant=tenant)) if r.seq < checkpoint.size
    ]
    entries = [(r.seq, r.leaf) for r in records]
    statement = sign_statement(signer, checkpoint, tenant, base.size, entries, now)
    out = [
        line(header),
        line({"type": "checkpoint", "checkpoint": checkpoint.as_json()}),
        line({"type": "statement", "statement": statement.as_json()}),
    ]
    for record in records:
        proof = [h.hex() for h in tree.inclusion_proof(record.seq)]
        out.append(
            b'{"type":"record","record":'
            + record.body
            + b',"checkpoint_size":'
            + str(checkpoint.size).encode()
            + b',"proof":'
            + orjson.dumps(proof)
            + b"}\n"
        )
    return iter(out)


async def export_store(
    store: AuditStore,
    log_ids: list[str],
    signer: Signer | None,
    now: str,
    tenant: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[bytes]:
    """What `audit export` writes: each log sealed first when the signing key is at hand, so
    the export holds nothing unsigned. Without the key a log export ends at the latest
    checkpoint the gateway signed; a tenant export needs the key for its statement. A log whose
    stored records do not match its checkpoints is not sealed (`warn` says so) but exported, so
    that `verify` shows what changed."""
    if tenant is not None and signer is None:
        raise ExportError(
            "a tenant export carries a statement signed when it is made: give the signing key"
            " (--signing-key or audit_signing_key_file)"
        )
    out: list[bytes] = []
    for log_id in log_ids:
        upto = None
        if signer is not None:
            try:
                upto = await seal(store, signer, log_id, now)
            except ExportError as exc:
                if tenant is not None:
                    raise
                warn(str(exc))
        if tenant is not None:
            assert signer is not None
            out.extend(await export_tenant(store, log_id, tenant, signer, now, upto))
        else:
            out.extend(await export_log(store, log_id, upto))
    return out
