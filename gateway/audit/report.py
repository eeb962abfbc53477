"""`audit report`: where requests ran (country, operator jurisdiction, weights origin), refusals
by rule (in words, with the rule id) and by tenant, errors, the policy revisions seen, and whether
each log verifies; as text and as a standalone HTML page.

The report covers the logs it is given (every log in the store when none is named) and says which,
so a demo log in the same store is left out by naming the production one. It states its period,
its tenant filter, when it was generated and the policy revision in force at that time.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from dataclasses import dataclass, field

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.export import export_log
from gateway.audit.store import AuditStore, Query
from gateway.audit.summary import Summary
from gateway.audit.verify import verify_export
from gateway.console.charts import bars
from gateway.policy.rule_names import describe


@dataclass
class AuditReport:
    since: str | None
    until: str | None
    tenant: str | None
    logs: list[str]
    generated_at: str
    revision_in_force: str | None = None
    summary: Summary = field(default_factory=Summary)
    verification: dict[str, str] = field(default_factory=dict)


async def build_report(
    store: AuditStore,
    since: str | None,
    until: str | None,
    public_key: Ed25519PublicKey | None = None,
    *,
    tenant: str | None = None,
    log_ids: list[str] | None = None,
    revision_in_force: str | None = None,
) -> AuditReport:
    logs = log_ids or await store.log_ids()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    report = AuditReport(since, until, tenant, logs, now, revision_in_force)
    for log_id in logs:
        for stored in await store.read(
            Query(log_id=log_id, tenant=tenant, since=since, until=until)
        ):
            report.summary.add(stored.log_id, stored.seq, orjson.loads(stored.body))
    for log_id in logs:
        if public_key is None:
            report.verification[log_id] = "not checked (no public key given)"
            continue
        result = verify_export(list(await export_log(store, log_id)), public_key)
        report.verification[log_id] = (
            f"verified ({result.records} records)"
            if result.ok
            else "FAILED: " + "; ".join(str(f) for f in result.failures[:3])
        )
    return report


def rule_rows(counts: Counter[str]) -> list[tuple[str, int]]:
    return [(f"{describe(rule)} [{rule}]", n) for rule, n in counts.most_common()]


def sections(report: AuditReport) -> list[tuple[str, list[tuple[str, int]]]]:
    s = report.summary
    return [
        ("Decisions", s.decisions.most_common()),
        ("Where inference ran (country)", s.countries.most_common()),
        ("Operator's ultimate controlling jurisdiction", s.jurisdictions.most_common()),
        ("Operators and their control chains", s.chains.most_common()),
        ("Where the model weights come from", s.weights.most_common()),
        ("Refusals by rule", rule_rows(s.refusal_rules)),
        ("Refusals by tenant", s.refusal_tenants.most_common()),
        ("Errors by code", s.errors.most_common()),
    ]


def _heading(report: AuditReport) -> list[str]:
    revisions = ", ".join(
        f"{rev} ({seen.records} records)" for rev, seen in report.summary.revisions.items()
    )
    return [
        f"Period: {report.since or 'start of the log'} to {report.until or 'now'}",
        f"Tenant: {report.tenant or 'all tenants'}",
        f"Logs: {', '.join(report.logs) or 'none'}",
        f"Generated: {report.generated_at}; policy revision in force: "
        f"{report.revision_in_force or 'not known here'}",
        f"Policy revisions in these records: {revisions or 'none'}",
        f"Requests: {report.summary.total}",
    ]


def render_text(report: AuditReport) -> str:
    lines = ["Audit report", *_heading(report)]
    for title, rows in sections(report):
        lines.append(f"\n{title}")
        lines.extend(f"  {value:>8}  {key}" for key, value in rows)
        if not rows:
            lines.append("  (none)")
    lines.append("\nVerification")
    lines.extend(f"  {log_id}: {state}" for log_id, state in report.verification.items())
    return "\n".join(lines)


STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
body{color:#1a1a1a}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
svg text{font:13px system-ui,sans-serif;fill:#1a1a1a}.empty{color:#555}
table.bars{width:100%;border-collapse:collapse}table.bars caption{display:none}
table.bars th{font-weight:400;text-align:left;width:50%;padding:2px 8px 2px 0}
table.bars td.bar{width:40%}table.bars svg{display:block;width:100%;height:14px}
table.bars td.value{padding-left:8px}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}svg{break-inside:avoid}}
"""


def render_html(report: AuditReport) -> str:
    labels = ["Period", "Tenant", "Logs", "Generated", "Revisions seen", "Requests"]
    facts = "".join(
        f"<dt>{label}</dt><dd>{html.escape(line.split(': ', 1)[1])}</dd>"
        for label, line in zip(labels, _heading(report), strict=True)
    )
    body = [f"<h1>Audit report</h1><dl>{facts}</dl>"]
    for title, rows in sections(report):
        body.append(f"<h2>{html.escape(title)}</h2>{bars(rows, title)}")
    body.append("<h2>Verification</h2><ul>")
    body.extend(
        f"<li>{html.escape(log_id)}: {html.escape(state)}</li>"
        for log_id, state in report.verification.items()
    )
    body.append("</ul>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Audit report</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
