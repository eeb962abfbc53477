"""The signed statement that makes a tenant export provably complete.

An inclusion proof shows that a record is in the log; it cannot show that no record of the tenant
was left out. So a tenant export carries a statement, signed with the checkpoint key when the
export is made: relative to the checkpoint (size, root) the proofs refer to, the tenant has
`count` records from seq `since_seq` on (the first seq not pruned), the last one is `last_seq`,
and the SHA-256 over their (seq, leaf hash) pairs, in seq order, is `records_hash`. The verifier
recomputes all of it from the records in the export: a record removed from anywhere, replaced by
another (even one with a valid proof) or moved changes the count, the last seq or the hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.signing import Checkpoint, Signer, signature_valid

KIND = "sovereign-gateway-tenant-records/1"


def records_hash(entries: Iterable[tuple[int, bytes]]) -> str:
    """SHA-256 over each record's seq (8 bytes, big-endian) and leaf hash, in the order given."""
    digest = hashlib.sha256()
    for seq, leaf in entries:
        digest.update(seq.to_bytes(8, "big") + leaf)
    return digest.hexdigest()


@dataclass(frozen=True)
class TenantStatement:
    log_id: str
    tenant: str
    size: int  # the checkpoint the statement is relative to
    root: str  # hex
    since_seq: int  # records below it were pruned and are not counted
    count: int
    last_seq: int | None
    records_hash: str  # hex
    time: str  # RFC 3339, UTC
    key_id: str
    signature: str  # base64

    def signed_part(self) -> dict[str, Any]:
        return {
            "statement": KIND,
            "log_id": self.log_id,
            "tenant": self.tenant,
            "size": self.size,
            "root": self.root,
            "since_seq": self.since_seq,
            "count": self.count,
            "last_seq": self.last_seq,
            "records_hash": self.records_hash,
            "time": self.time,
        }

    def as_json(self) -> dict[str, Any]:
        return {**self.signed_part(), "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantStatement:
        """Raises `ValueError` for anything but a statement of this format."""
        if data.get("statement") != KIND:
            raise ValueError(f"not a {KIND} statement")
        last = data["last_seq"]
        statement = cls(
            log_id=str(data["log_id"]),
            tenant=str(data["tenant"]),
            size=int(data["size"]),
            root=str(data["root"]),
            since_seq=int(data["since_seq"]),
            count=int(data["count"]),
            last_seq=None if last is None else int(last),
            records_hash=str(data["records_hash"]),
            time=str(data["time"]),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )
        if statement.signed_part() != {k: data.get(k) for k in statement.signed_part()}:
            raise ValueError("a statement field has the wrong type")
        return statement

    def verify(self, key: Ed25519PublicKey) -> bool:
        return signature_valid(key, self.signed_part(), self.signature)

    def covers(self, checkpoint: Checkpoint) -> bool:
        return (self.log_id, self.size, self.root) == (
            checkpoint.log_id,
            checkpoint.size,
            checkpoint.root,
        )


def sign_statement(
    signer: Signer,
    checkpoint: Checkpoint,
    tenant: str,
    since_seq: int,
    entries: list[tuple[int, bytes]],
    time: str,
) -> TenantStatement:
    """The statement of `entries`, the tenant's (seq, leaf hash) pairs below the checkpoint."""
    unsigned = TenantStatement(
        log_id=checkpoint.log_id,
        tenant=tenant,
        size=checkpoint.size,
        root=checkpoint.root,
        since_seq=since_seq,
        count=len(entries),
        last_seq=entries[-1][0] if entries else None,
        records_hash=records_hash(entries),
        time=time,
        key_id=signer.key_id,
        signature="",
    )
    return replace(unsigned, signature=signer.signature(unsigned.signed_part()))
