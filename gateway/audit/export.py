"""Export the audit log as JSON Lines that `verify` checks offline.

A whole-log export is, per log: a header, the base frontier if old epochs were pruned, then every
record in order with each checkpoint placed right after the record that completes its size. A
tenant export holds that tenant's records only, each with its RFC 6962 inclusion proof against
the latest checkpoint, so the tenant's auditor verifies them without seeing anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from gateway.audit.merkle import Tree
from gateway.audit.signing import Checkpoint
from gateway.audit.store import AuditStore, Query

FORMAT = "sovereign-gateway-audit/1"


class ExportError(Exception):
    pass


def line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document) + b"\n"


async def export_log(store: AuditStore, log_id: str) -> Iterator[bytes]:
    base = await store.base(log_id)
    records = await store.read(Query(log_id=log_id))
    checkpoints = await store.checkpoints(log_id)
    out = [line({"type": "header", "format": FORMAT, "scope": "log", "log_id": log_id})]
    if base.size:
        out.append(line({"type": "base", "frontier": base.to_json()}))
    by_size: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        by_size.setdefault(cp.size, []).append(cp)
    for size in sorted(s for s in by_size if s <= base.size):
        out.extend(line({"type": "checkpoint", "checkpoint": cp.as_json()}) for cp in by_size[size])
    for record in records:
        out.append(b'{"type":"record","record":' + record.body + b"}\n")
        for cp in by_size.get(record.seq + 1, ()):
            out.append(line({"type": "checkpoint", "checkpoint": cp.as_json()}))
    return iter(out)


async def export_tenant(store: AuditStore, log_id: str, tenant: str) -> Iterator[bytes]:
    checkpoints = await store.checkpoints(log_id)
    base = await store.base(log_id)
    header = {"type": "header", "format": FORMAT, "scope": "tenant", "log_id": log_id}
    header["tenant"] = tenant
    out = [line(header)]
    if not checkpoints:
        return iter(out)
    latest = max(checkpoints, key=lambda cp: (cp.size, cp.time))
    if latest.size < base.size:
        raise ExportError(
            f"log {log_id} was pruned up to {base.size}, past its latest checkpoint"
            f" ({latest.size}); no signed root covers its records"
        )
    out.append(line({"type": "checkpoint", "checkpoint": latest.as_json()}))
    # after pruning, the base's subtree roots stand in for the records that are gone
    leaves = (await store.leaves(log_id))[: latest.size - base.size]
    tree = Tree(leaves, base)
    for record in await store.read(Query(log_id=log_id, tenant=tenant)):
        if record.seq >= latest.size:
            break
        proof = [h.hex() for h in tree.inclusion_proof(record.seq)]
        out.append(
            b'{"type":"record","record":'
            + record.body
            + b',"checkpoint_size":'
            + str(latest.size).encode()
            + b',"proof":'
            + orjson.dumps(proof)
            + b"}\n"
        )
    return iter(out)
