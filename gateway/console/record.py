"""One record: the decision explained rule by rule, the attempts, the deployment's facts, and
its inclusion proof checked against the latest signed checkpoint on the server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.merkle import Tree, leaf_hash, verify_inclusion
from gateway.audit.query import refusing_rules
from gateway.audit.store import AuditStore, StoredRecord
from gateway.errors import GatewayError
from gateway.policy.compile import CompiledPolicy
from gateway.policy.explain import explain_route
from gateway.policy.holder import PolicyHolder


@dataclass
class ProofCheck:
    leaf: str
    leaf_matches: bool  # the stored contents hash to the stored leaf
    checkpoint: dict[str, Any] | None = None
    signature_ok: bool = False
    included: bool = False
    path: list[str] = field(default_factory=list)
    problem: str | None = None
    deferred: int | None = None  # leaves a proof would hash, when it was left for a click

    @property
    def ok(self) -> bool:
        return self.leaf_matches and self.signature_ok and self.included


# A proof needs every leaf hash of the log up to the checkpoint (about 10 s per million records
# on the benchmark machine): a record page proves inline up to this many, and offers a link above.
INLINE_PROOF_LEAVES = 100_000


async def check_proof(
    store: AuditStore,
    stored: StoredRecord,
    public_key: Ed25519PublicKey,
    max_leaves: int | None = INLINE_PROOF_LEAVES,
) -> ProofCheck:
    leaf = leaf_hash(stored.body)
    check = ProofCheck(leaf.hex(), leaf == stored.leaf)
    checkpoints = [c for c in await store.checkpoints(stored.log_id) if c.size > stored.seq]
    if not checkpoints:
        check.problem = "No signed checkpoint covers this record yet; it will within seconds."
        return check
    latest = max(checkpoints, key=lambda c: (c.size, c.time))
    check.checkpoint = latest.as_json()
    check.signature_ok = latest.verify(public_key)
    base = await store.base(stored.log_id)
    if max_leaves is not None and latest.size - base.size > max_leaves:
        check.deferred = latest.size - base.size
        return check
    leaves = (await store.leaves(stored.log_id))[: latest.size - base.size]

    def prove() -> tuple[list[bytes], bool]:
        path = Tree(leaves, base).inclusion_proof(stored.seq)
        return path, verify_inclusion(
            leaf, stored.seq, latest.size, path, bytes.fromhex(latest.root)
        )

    path, check.included = await asyncio.to_thread(prove)  # hashing a large log takes a while
    check.path = [h.hex() for h in path]
    return check


def explanation(holder: PolicyHolder, record: dict[str, Any]) -> dict[str, Any]:
    """Every candidate and rule, re-evaluated under the record's revision when it is still (or
    was just before) in force; otherwise the refusing rules the record itself holds."""
    revision = record.get("policy_revision")
    if revision is None:
        return {"source": "none", "candidates": []}
    known: list[CompiledPolicy] = [c for c in (holder.current, holder.previous) if c is not None]
    for compiled in known:
        if compiled.revision != revision:
            continue
        try:
            doc = explain_route(
                compiled,
                str(record.get("tenant")),
                str(record.get("requested_model")),
                record.get("data_class"),
            )
        except GatewayError:
            break
        return {"source": "policy", **doc}
    candidates = [
        {"deployment": c["deployment"], "eligible": False, "failed": c.get("failed_rules", [])}
        for c in (record.get("refusal") or {}).get("candidates", [])
    ]
    return {"source": "record", "candidates": candidates, "rules": sorted(refusing_rules(record))}
