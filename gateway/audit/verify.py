"""Verify an export offline with nothing but the export and the public key.

Each failure kind has its own words: an edited record (the records of an epoch do not hash to its
signed root), a deleted record (a gap in sequence numbers), a reordered or duplicated record, a
truncated tail (against a checkpoint the auditor already holds), a checkpoint signed by another
key, a bad signature, and a record that no signed checkpoint covers (`unsigned`: whatever follows
the last checkpoint could have been written by anyone). Tenant exports are checked by
`verify_tenant.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.findings import Checks, Finding, Report
from gateway.audit.merkle import Frontier
from gateway.audit.signing import Checkpoint
from gateway.audit.verify_tenant import TenantSection

__all__ = ["Finding", "Report", "verify_export"]


class Section(Protocol):
    def take(self, kind: str, item: dict[str, Any], number: int) -> None: ...

    def finish(self) -> None: ...


def verify_export(
    lines: Iterable[bytes],
    public_key: Ed25519PublicKey,
    held: list[Checkpoint] | None = None,
) -> Report:
    report = Report()
    section: Section | None = None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
            kind = item["type"]
            if kind == "header":
                if section is not None:
                    section.finish()
                section = _section(item, Checks(public_key, report), held or [])
            elif section is None:
                report.fail("malformed", f"line {number}: the export does not start with a header")
                return report
            else:
                section.take(kind, item, number)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            report.fail("malformed", f"line {number} is not an export line")
    if section is None:
        report.fail("malformed", "the export is empty")
    else:
        section.finish()
    return report


def _section(header: dict[str, Any], checks: Checks, held: list[Checkpoint]) -> Section:
    log_id = str(header.get("log_id"))
    checks.report.logs.append(log_id)
    held = [cp for cp in held if cp.log_id == log_id]
    if header.get("scope", "log") == "tenant":
        return TenantSection(log_id, str(header.get("tenant")), checks, held)
    return _LogSection(log_id, checks, held)


class _LogSection:
    """One log of a whole-log export: every record, in order, between its checkpoints."""

    def __init__(self, log_id: str, checks: Checks, held: list[Checkpoint]) -> None:
        self.log_id = log_id
        self.checks = checks
        self.report = checks.report
        self.held = {cp.size: cp for cp in held}
        self.frontier = Frontier()
        self.seen: set[int] = set()
        self.epoch_start = 0
        self.epoch_broken = False
        self.covered = 0  # the largest size a valid signature of this log vouches for
        self.signature_failed = False
        self.next_seq = self.first_seq = 0  # first_seq: where pruning left the log
        self.valid_checkpoints = 0
        self.diverged_at: int | None = None  # after a failure, later roots cannot match

    def take(self, kind: str, item: dict[str, Any], number: int) -> None:
        if kind == "base":
            self.frontier = Frontier.from_json(item["frontier"])
            self.epoch_start = self.next_seq = self.first_seq = self.frontier.size
        elif kind == "checkpoint":
            self._checkpoint(Checkpoint.from_json(item["checkpoint"]))
        elif kind == "record":
            self.report.records += 1
            self._record(item["record"], number)
        else:
            self.report.fail("malformed", f"line {number}: unknown line type {kind!r}")

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
        leaf = self.checks.leaf(record, number)
        if leaf is not None:
            self.frontier.append(leaf)
        held = self.held.get(self.frontier.size)
        if held is not None and held.root != self.frontier.root().hex():
            self.report.fail(
                "rewritten",
                f"the root at size {held.size} differs from the checkpoint you hold",
            )

    def _checkpoint(self, cp: Checkpoint) -> None:
        self.report.checkpoints += 1
        valid = cp.verify(self.checks.key) and cp.log_id == self.log_id
        signed = self.checks.signed(f"checkpoint of size {cp.size}", cp.key_id, valid)
        if signed:
            self.covered = max(self.covered, cp.size)
        else:
            self.signature_failed = True
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
            self.valid_checkpoints += 1
        self.epoch_start = cp.size
        self.epoch_broken = False

    def finish(self) -> None:
        if self.diverged_at is not None:
            self.report.notes.append(
                f"log {self.log_id}: after the failure before size {self.diverged_at}, later"
                " checkpoints cannot be compared with the records"
            )
        size = self.frontier.size
        beyond = [s for s in self.held if s > size]
        if beyond:
            self.report.fail(
                "truncated",
                f"log {self.log_id} ends at {size} records, but you hold a checkpoint of size"
                f" {max(beyond)}",
            )
        if self.signature_failed:
            return  # the signature failures say why the rest cannot be vouched for
        if size > self.covered:
            self.report.fail(
                "unsigned",
                f"log {self.log_id}: records seq {max(self.covered, self.first_seq)} to"
                f" {size - 1} are covered by no signed checkpoint",
            )
        elif self.valid_checkpoints == 0:
            self.report.fail("unsigned", f"log {self.log_id} has no valid checkpoint")
