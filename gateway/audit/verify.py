"""Verify an export offline with nothing but the export and the public key.

Each failure kind has its own words: an edited record (the records of an epoch do not hash to its
signed root), a deleted record (a gap in sequence numbers), a reordered or duplicated record, a
truncated tail (against a checkpoint the auditor already holds), a checkpoint signed by another
key, and a bad signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.canonical import NotCanonical, canonical
from gateway.audit.merkle import Frontier, leaf_hash, verify_inclusion
from gateway.audit.signing import Checkpoint, key_id


@dataclass
class Finding:
    kind: str  # edited, deleted, reordered, duplicated, truncated, wrong_key, bad_signature, ...
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


def verify_export(
    lines: Iterable[bytes],
    public_key: Ed25519PublicKey,
    held: list[Checkpoint] | None = None,
) -> Report:
    report = Report()
    section: _Section | None = None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
            kind = item["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            report.fail("malformed", f"line {number} is not an export line")
            continue
        if kind == "header":
            if section is not None:
                section.finish()
            section = _Section(item, public_key, report, held or [])
        elif section is None:
            report.fail("malformed", f"line {number}: the export does not start with a header")
            return report
        else:
            section.take(kind, item, number)
    if section is None:
        report.fail("malformed", "the export is empty")
    else:
        section.finish()
    return report


class _Section:
    def __init__(
        self,
        header: dict[str, Any],
        public_key: Ed25519PublicKey,
        report: Report,
        held: list[Checkpoint],
    ) -> None:
        self.log_id = str(header.get("log_id"))
        self.scope = header.get("scope", "log")
        self.tenant = header.get("tenant")
        self.key = public_key
        self.key_id = key_id(public_key)
        self.report = report
        self.held = {cp.size: cp for cp in held if cp.log_id == self.log_id}
        self.frontier = Frontier()
        self.seen: set[int] = set()
        self.epoch_start = 0
        self.epoch_broken = False
        self.signed_size = 0
        self.next_seq = 0
        self.valid_checkpoints = 0
        self.diverged_at: int | None = None  # after a failure, later roots cannot match
        self.checkpoint: Checkpoint | None = None  # tenant scope: the one proofs refer to
        report.logs.append(self.log_id)

    def take(self, kind: str, item: dict[str, Any], number: int) -> None:
        if kind == "base":
            self.frontier = Frontier.from_json(item["frontier"])
            self.epoch_start = self.next_seq = self.frontier.size
        elif kind == "checkpoint":
            self._checkpoint(Checkpoint.from_json(item["checkpoint"]))
        elif kind == "record":
            self.report.records += 1
            if self.scope == "tenant":
                self._tenant_record(item, number)
            else:
                self._record(item["record"], number)
        else:
            self.report.fail("malformed", f"line {number}: unknown line type {kind!r}")

    def _leaf(self, record: dict[str, Any], number: int) -> bytes | None:
        try:
            return leaf_hash(canonical(record))
        except NotCanonical as exc:
            self.report.fail("edited", f"line {number}: record is not canonical ({exc})")
            return None

    def _record(self, record: dict[str, Any], number: int) -> None:
        seq = record.get("seq")
        expected = self.next_seq
        if record.get("log_id") != self.log_id or not isinstance(seq, int):
            self.report.fail("edited", f"line {number}: record has no seq or a foreign log id")
            self.epoch_broken = True
        elif seq in self.seen:
            self.report.fail("duplicated", f"record seq {seq} appears more than once")
            self.epoch_broken = True
            return  # a duplicate is not a leaf of the tree
        elif seq < expected:
            self.report.fail("reordered", f"record seq {seq} comes after seq {expected - 1}")
            self.epoch_broken = True
        elif seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
            self.report.fail("deleted", f"record seq {missing} is missing")
            self.epoch_broken = True
        if isinstance(seq, int):
            self.seen.add(seq)
            self.next_seq = max(self.next_seq, seq + 1)
        leaf = self._leaf(record, number)
        if leaf is not None:
            self.frontier.append(leaf)
        held = self.held.get(self.frontier.size)
        if held is not None and held.root != self.frontier.root().hex():
            self.report.fail(
                "rewritten",
                f"the root at size {held.size} differs from the checkpoint you hold",
            )

    def _signature_ok(self, cp: Checkpoint) -> bool:
        self.report.checkpoints += 1
        if cp.key_id != self.key_id:
            self.report.fail(
                "wrong_key",
                f"checkpoint of size {cp.size} was signed by key {cp.key_id}, not by the public"
                f" key given ({self.key_id})",
            )
            return False
        if not cp.verify(self.key) or cp.log_id != self.log_id:
            self.report.fail("bad_signature", f"checkpoint of size {cp.size} has a bad signature")
            return False
        return True

    def _checkpoint(self, cp: Checkpoint) -> None:
        signed = self._signature_ok(cp)
        if self.scope == "tenant":
            self.checkpoint = cp if signed else None
            return
        if cp.size < self.frontier.size and cp.size <= self.epoch_start:
            return  # a checkpoint of a pruned epoch: its signature is all that can be checked
        if cp.size != self.frontier.size:
            if self.epoch_broken or self.diverged_at is not None:
                self.diverged_at = self.diverged_at or cp.size
                return
            self.diverged_at = cp.size
            if cp.size > self.frontier.size:
                missing = f"seq {self.frontier.size} to {cp.size - 1}"
                self.report.fail(
                    "deleted", f"record(s) {missing} before the checkpoint of size {cp.size}"
                )
            else:
                self.report.fail(
                    "reordered",
                    f"checkpoint of size {cp.size} stands after {self.frontier.size} records",
                )
            return
        if cp.root != self.frontier.root().hex():
            if not self.epoch_broken and self.diverged_at is None:
                self.report.fail(
                    "edited",
                    f"records seq {self.epoch_start} to {cp.size - 1} do not hash to the signed"
                    f" root of the checkpoint of size {cp.size}",
                )
            if self.diverged_at is None:
                self.diverged_at = cp.size
        elif self.epoch_broken and self.diverged_at is None:
            self.diverged_at = cp.size
        if signed:
            self.signed_size = max(self.signed_size, cp.size)
            self.valid_checkpoints += 1
        self.epoch_start = cp.size
        self.epoch_broken = False

    def _tenant_record(self, item: dict[str, Any], number: int) -> None:
        record = item["record"]
        seq = record.get("seq")
        if record.get("tenant") != self.tenant:
            self.report.fail("foreign", f"line {number}: record of another tenant")
            return
        if seq in self.seen:
            self.report.fail("duplicated", f"record seq {seq} appears more than once")
            return
        self.seen.add(seq)
        cp = self.checkpoint
        if cp is None:
            self.report.fail("unsigned", f"line {number}: no valid checkpoint to prove against")
            return
        leaf = self._leaf(record, number)
        proof = [bytes.fromhex(h) for h in item.get("proof", [])]
        if leaf is None or not verify_inclusion(leaf, seq, cp.size, proof, bytes.fromhex(cp.root)):
            self.report.fail(
                "edited",
                f"record seq {seq} is not included in the signed tree of size {cp.size}",
            )

    def finish(self) -> None:
        if self.diverged_at is not None:
            self.report.notes.append(
                f"log {self.log_id}: after the failure before size {self.diverged_at}, later"
                " checkpoints cannot be compared with the records"
            )
        if self.scope == "tenant":
            if self.checkpoint is None and self.report.records:
                self.report.fail("unsigned", f"log {self.log_id}: no valid checkpoint")
            return
        size = self.frontier.size
        signature_failed = any(
            f.kind in ("wrong_key", "bad_signature") for f in self.report.failures
        )
        beyond = [s for s in self.held if s > size]
        if beyond:
            self.report.fail(
                "truncated",
                f"log {self.log_id} ends at {size} records, but you hold a checkpoint of size"
                f" {max(beyond)}",
            )
        if size > self.signed_size and not signature_failed:
            self.report.notes.append(
                f"log {self.log_id}: {size - self.signed_size} record(s) after the last checkpoint"
                " are not covered by a signature yet"
            )
        if self.valid_checkpoints == 0 and not signature_failed:
            self.report.fail("unsigned", f"log {self.log_id} has no valid checkpoint")
