"""Filters compliance teams use on records, shared by `audit query` and the audit API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DECISIONS = ("allowed", "refused", "error")
FIELDS = ("decision", "model", "country", "jurisdiction", "backend", "rule")


@dataclass(frozen=True)
class RecordFilter:
    decision: str | None = None
    model: str | None = None  # requested model or alias
    country: str | None = None  # inference country of the deployment used
    jurisdiction: str | None = None  # any link of the operator's control chain
    backend: str | None = None
    rule: str | None = None  # a rule that refused some candidate

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RecordFilter:
        return cls(**{name: values.get(name) or None for name in FIELDS})

    def matches(self, record: dict[str, Any]) -> bool:
        dep = record.get("deployment") or {}
        if self.decision and record.get("decision") != self.decision:
            return False
        if self.model and record.get("requested_model") != self.model:
            return False
        if self.country and dep.get("inference_country") != self.country.upper():
            return False
        chain = dep.get("operator_control_chain", [])
        if self.jurisdiction and self.jurisdiction.upper() not in chain:
            return False
        if self.backend and dep.get("backend") != self.backend:
            return False
        if self.rule:
            refusal = record.get("refusal") or {}
            rules = {r for c in refusal.get("candidates", []) for r in c.get("failed_rules", [])}
            if self.rule not in rules:
                return False
        return True


def stored_time(text: str) -> str:
    """A date or an RFC 3339 time as the store keeps times (UTC, microseconds, `Z`), so that
    they compare as text; raises `ValueError` for anything else."""
    if len(text) == 10:
        return dt.date.fromisoformat(text).isoformat() + "T00:00:00.000000Z"
    if "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 date or time: {text!r}")
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
