"""Verify a tenant export: each record's inclusion proof, and that no record of the tenant is
missing, against the signed statement of the tenant's records (`statement.py`).

Failures of its own: `no_statement` (nothing says how many records the tenant has),
`mismatched` (the statement is relative to another checkpoint than the proofs), `incomplete` (a
record the statement lists is missing), `unlisted` (a record the statement does not list) and
`substituted` (as many records as listed, but not the same ones).
"""

from __future__ import annotations

from typing import Any

from gateway.audit.findings import Checks
from gateway.audit.merkle import verify_inclusion
from gateway.audit.signing import Checkpoint
from gateway.audit.statement import TenantStatement, records_hash


class TenantSection:
    def __init__(self, log_id: str, tenant: str, checks: Checks, held: list[Checkpoint]) -> None:
        self.log_id = log_id
        self.tenant = tenant
        self.checks = checks
        self.report = checks.report
        self.held = held
        self.checkpoint: Checkpoint | None = None  # the one proofs refer to
        self.signature_failed = False
        self.statement: TenantStatement | None = None
        self.statement_valid = False
        self.entries: dict[int, bytes] = {}  # seq -> leaf of the tenant's records here
        self.last_seq = -1
        self.failures_before = len(checks.report.failures)

    def take(self, kind: str, item: dict[str, Any], number: int) -> None:
        if kind == "checkpoint":
            self._checkpoint(Checkpoint.from_json(item["checkpoint"]), number)
        elif kind == "statement":
            self._statement(TenantStatement.from_json(item["statement"]), number)
        elif kind == "record":
            self.report.records += 1
            self._record(item, number)
        else:
            self.report.fail("malformed", f"line {number}: unknown line type {kind!r}")

    def _checkpoint(self, cp: Checkpoint, number: int) -> None:
        self.report.checkpoints += 1
        if self.checkpoint is not None:
            self.report.fail("malformed", f"line {number}: a tenant export has one checkpoint")
            return
        valid = cp.verify(self.checks.key) and cp.log_id == self.log_id
        if self.checks.signed(f"checkpoint of size {cp.size}", cp.key_id, valid):
            self.checkpoint = cp
        else:
            self.signature_failed = True

    def _statement(self, statement: TenantStatement, number: int) -> None:
        if self.statement is not None:
            self.report.fail("malformed", f"line {number}: a tenant export has one statement")
            return
        self.statement = statement
        what = f"the statement of tenant {statement.tenant}'s records"
        self.statement_valid = self.checks.signed(
            what, statement.key_id, statement.verify(self.checks.key)
        )

    def _record(self, item: dict[str, Any], number: int) -> None:
        record = item["record"]
        seq = record.get("seq")
        if record.get("tenant") != self.tenant or record.get("log_id") != self.log_id:
            self.report.fail("foreign", f"line {number}: record of another tenant or log")
            return
        if not isinstance(seq, int):
            self.report.fail("edited", f"line {number}: record has no seq")
            return
        if seq in self.entries:
            self.report.fail("duplicated", f"record seq {seq} appears more than once")
            return
        cp = self.checkpoint
        if cp is None:
            if not self.signature_failed:  # else the signature failure says it all
                self.report.fail("unsigned", f"line {number}: no checkpoint to prove against")
            return
        if seq >= cp.size:
            self.report.fail(
                "unsigned", f"record seq {seq} lies beyond the checkpoint of size {cp.size}"
            )
            return
        if seq < self.last_seq:
            self.report.fail("reordered", f"record seq {seq} comes after seq {self.last_seq}")
        self.last_seq = max(self.last_seq, seq)
        leaf = self.checks.leaf(record, number)
        if leaf is None:
            return
        self.entries[seq] = leaf
        proof = [bytes.fromhex(h) for h in item.get("proof", [])]
        if not verify_inclusion(leaf, seq, cp.size, proof, bytes.fromhex(cp.root)):
            self.report.fail(
                "edited",
                f"record seq {seq} is not included in the signed tree of size {cp.size}",
            )

    def finish(self) -> None:
        cp = self.checkpoint
        if cp is None:
            if not self.signature_failed:
                self.report.fail("unsigned", f"log {self.log_id}: no checkpoint")
            return
        beyond = [held.size for held in self.held if held.size > cp.size]
        if beyond:
            self.report.fail(
                "truncated",
                f"the export stops at the checkpoint of size {cp.size}, but you hold one of size"
                f" {max(beyond)}",
            )
        statement = self.statement
        if statement is None:
            self.report.fail(
                "no_statement",
                f"no signed statement of tenant {self.tenant}'s records: the export cannot be"
                " shown to be whole",
            )
            return
        if not self.statement_valid:
            return  # the signature failure is reported; what it says counts for nothing
        self._compare(statement, cp)

    def _compare(self, statement: TenantStatement, cp: Checkpoint) -> None:
        if statement.tenant != self.tenant or statement.log_id != self.log_id:
            self.report.fail(
                "foreign",
                f"the statement is of tenant {statement.tenant} in log {statement.log_id}, not"
                f" of tenant {self.tenant} in log {self.log_id}",
            )
            return
        if not statement.covers(cp):
            self.report.fail(
                "mismatched",
                f"the statement counts records below size {statement.size}, but the proofs"
                f" refer to the checkpoint of size {cp.size}",
            )
            return
        held = len(self.entries)
        listed = f"the signed statement lists {statement.count} record(s) of tenant {self.tenant}"
        if held < statement.count:
            missing = statement.count - held
            last = statement.last_seq
            tail = f", its last one (seq {last}) among them" if last not in self.entries else ""
            self.report.fail(
                "incomplete",
                f"{missing} record(s) missing{tail}: {listed} from seq {statement.since_seq}"
                f" below size {cp.size}, the export holds {held}",
            )
        elif held > statement.count:
            self.report.fail("unlisted", f"{listed}, the export holds {held}")
        elif len(self.report.failures) > self.failures_before:
            return  # a record that failed already explains why the hash cannot match
        elif records_hash(sorted(self.entries.items())) != statement.records_hash or (
            statement.last_seq != max(self.entries, default=None)
        ):
            self.report.fail(
                "substituted",
                f"{listed} and the export holds as many, but not the same ones",
            )
