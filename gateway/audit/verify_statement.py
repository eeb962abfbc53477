"""Hold a tenant export's signed statement to a whole-log export: does it tell the truth?

The tenant's auditor alone must take the key holder's word for which records the tenant has. A
whole-log export that verifies (and reaches the statement's checkpoint) settles it: the tenant's
records from `since_seq` below the checkpoint's size are recomputed from it and compared with
the statement. A statement that leaves a record out is then `false_statement`, a signed proof
that the key holder misreported the tenant's records.
"""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.canonical import canonical
from gateway.audit.findings import Report
from gateway.audit.merkle import leaf_hash
from gateway.audit.statement import TenantStatement, records_hash
from gateway.audit.verify import verify_export


def check_statements(
    tenant_lines: list[bytes], log_lines: list[bytes], key: Ed25519PublicKey
) -> Report:
    """The whole-log export verified, then each valid statement of the tenant export checked
    against it."""
    report = verify_export(log_lines, key)
    if not report.ok:
        report.notes.append("the whole-log export does not verify: no statement is checked")
        return report
    sections: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for item in (orjson.loads(x) for x in log_lines if x.strip()):
        if item["type"] == "header":
            current = sections.setdefault(str(item["log_id"]), [])
        current.append(item)
    for item in (orjson.loads(x) for x in tenant_lines if x.strip()):
        if item.get("type") != "statement":
            continue
        try:
            statement = TenantStatement.from_json(item["statement"])
        except (KeyError, TypeError, ValueError):
            continue  # the tenant export's own verification reports it
        if statement.verify(key):
            _check(statement, sections.get(statement.log_id, []), report)
    return report


def _check(statement: TenantStatement, of_log: list[dict[str, Any]], report: Report) -> None:
    signed = {
        (i["checkpoint"]["size"], i["checkpoint"]["root"])
        for i in of_log
        if i["type"] == "checkpoint"
    }
    where = f"tenant {statement.tenant} in log {statement.log_id} below size {statement.size}"
    if (statement.size, statement.root) not in signed:
        report.fail(
            "mismatched",
            f"the whole-log export holds no checkpoint the statement of {where} refers to",
        )
        return
    bases = [i["frontier"]["size"] for i in of_log if i["type"] == "base"]
    if bases and bases[0] > statement.since_seq:
        report.notes.append(
            f"log {statement.log_id} was pruned past seq {statement.since_seq} in the whole-log"
            f" export: the statement of {where} cannot be checked"
        )
        return
    entries = [
        (r["seq"], leaf_hash(canonical(r)))
        for r in (i["record"] for i in of_log if i["type"] == "record")
        if r.get("tenant") == statement.tenant and statement.since_seq <= r["seq"] < statement.size
    ]
    if (len(entries), records_hash(entries)) != (statement.count, statement.records_hash):
        report.fail(
            "false_statement",
            f"the signed statement lists {statement.count} record(s) of {where}; the log"
            f" holds {len(entries)} (seq {', '.join(str(s) for s, _ in entries)})",
        )
