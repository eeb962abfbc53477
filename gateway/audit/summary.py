"""One pass over audit records, counting what compliance teams ask about: where requests ran,
under which operator jurisdictions, what was refused and by which rule, errors, tenants, and the
policy revisions in force. The console's overview and residency report and `audit report` all
read this."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.query import refusing_rules


@dataclass
class RevisionSeen:
    first: str
    last: str
    records: int = 0


@dataclass
class Summary:
    bucket_chars: int = 10  # time buckets: 10 = days (2026-11-30), 13 = hours (2026-11-30T14)
    total: int = 0
    first: str | None = None
    last: str | None = None
    decisions: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    jurisdictions: Counter[str] = field(default_factory=Counter)  # top of the control chain
    chains: Counter[str] = field(default_factory=Counter)  # operator (chain) as words
    weights: Counter[str] = field(default_factory=Counter)
    deployments: Counter[str] = field(default_factory=Counter)
    tenants: Counter[str] = field(default_factory=Counter)
    refusal_rules: Counter[str] = field(default_factory=Counter)
    refusal_tenants: Counter[str] = field(default_factory=Counter)
    refusal_models: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # error codes other than refusals
    revisions: dict[str, RevisionSeen] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)  # per log, the last record counted
    by_time_country: dict[str, Counter[str]] = field(default_factory=dict)
    by_time_jurisdiction: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, log_id: str, seq: int, record: dict[str, Any]) -> None:
        """Count one record. A request counts once: a stream by its `admitted` record, whose
        `completed` record adds only its status and error; `outage` records and `correction`
        records (rare: see the audit writer) describe no new request and are not counted."""
        kind = record.get("kind", "request")
        if kind in ("outage", "correction"):
            return
        if kind == "completed":
            self.last_seq[log_id] = max(seq, self.last_seq.get(log_id, -1))
            self._outcome(record)
            return
        time = str(record.get("time"))
        self.total += 1
        self.first = time if self.first is None or time < self.first else self.first
        self.last = time if self.last is None or time > self.last else self.last
        self.last_seq[log_id] = max(seq, self.last_seq.get(log_id, -1))
        decision = str(record.get("decision"))
        tenant = str(record.get("tenant"))
        self.decisions[decision] += 1
        self.tenants[tenant] += 1
        self._outcome(record)
        revision = record.get("policy_revision")
        if revision:
            seen = self.revisions.setdefault(revision, RevisionSeen(time, time))
            seen.first, seen.last = min(seen.first, time), max(seen.last, time)
            seen.records += 1
        bucket = time[: self.bucket_chars]
        dep = record.get("deployment")
        if dep:
            chain = list(dep.get("operator_control_chain") or ["unknown"])
            self.countries[dep["inference_country"]] += 1
            self.jurisdictions[chain[-1]] += 1
            self.chains[f"{dep.get('operator', '?')} ({' > '.join(chain)})"] += 1
            self.weights[dep.get("weights_origin") or "unknown"] += 1
            self.deployments[str(dep.get("id"))] += 1
            self.by_time_country.setdefault(bucket, Counter())[dep["inference_country"]] += 1
            self.by_time_jurisdiction.setdefault(bucket, Counter())[chain[-1]] += 1
        if decision == "refused":
            self.refusal_tenants[tenant] += 1
            self.refusal_models[str(record.get("requested_model"))] += 1
            for rule in refusing_rules(record):
                self.refusal_rules[rule] += 1

    def _outcome(self, record: dict[str, Any]) -> None:
        status = record.get("status")
        if isinstance(status, int):
            self.statuses[status] += 1
        if record.get("decision") != "refused" and record.get("error"):
            self.errors[str(record["error"].get("code") or record["error"].get("type"))] += 1


def summarise(
    records: Iterable[tuple[str, int, dict[str, Any]]], bucket_chars: int = 10
) -> Summary:
    summary = Summary(bucket_chars)
    for log_id, seq, record in records:
        summary.add(log_id, seq, record)
    return summary
