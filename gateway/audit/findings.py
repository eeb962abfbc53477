"""What `verify` finds, and the checks both kinds of export section share.

Kinds of failure: `malformed`, `edited`, `deleted`, `reordered`, `duplicated`, `truncated`,
`rewritten`, `wrong_key`, `bad_signature`, `unsigned` (a record no signed checkpoint covers),
`foreign` (a record or statement of another tenant or log), and for tenant exports `no_statement`,
`mismatched`, `incomplete`, `unlisted` and `substituted` (see `verify_tenant.py`), and
`false_statement` when a statement is held to a whole-log export (`verify_statement.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.canonical import NotCanonical, canonical
from gateway.audit.merkle import leaf_hash
from gateway.audit.signing import key_id


@dataclass
class Finding:
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class Report:
    failures: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    checkpoints: int = 0
    logs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, kind: str, message: str) -> None:
        self.failures.append(Finding(kind, message))


class Checks:
    """The public key and the report one section of an export is checked with."""

    def __init__(self, public_key: Ed25519PublicKey, report: Report) -> None:
        self.key = public_key
        self.key_id = key_id(public_key)
        self.report = report

    def leaf(self, record: dict[str, Any], number: int) -> bytes | None:
        try:
            return leaf_hash(canonical(record))
        except NotCanonical as exc:
            self.report.fail("edited", f"line {number}: record is not canonical ({exc})")
            return None

    def signed(self, what: str, signer_id: str, valid: bool) -> bool:
        """Report a signature by another key or a bad one; `valid` is the signature's check."""
        if signer_id != self.key_id:
            self.report.fail(
                "wrong_key",
                f"{what} was signed by key {signer_id}, not by the public key given"
                f" ({self.key_id})",
            )
            return False
        if not valid:
            self.report.fail("bad_signature", f"{what} has a bad signature")
            return False
        return True
