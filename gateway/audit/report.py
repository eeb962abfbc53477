"""`audit report`: where requests ran (country, operator jurisdiction, weights origin), refusals
by rule and tenant, and whether each log verifies, as text and as a standalone HTML page."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.export import export_log
from gateway.audit.query import requests_of
from gateway.audit.store import AuditStore, Query
from gateway.audit.verify import verify_export


@dataclass
class AuditReport:
    since: str | None
    until: str | None
    total: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    jurisdictions: Counter[str] = field(default_factory=Counter)
    weights: Counter[str] = field(default_factory=Counter)
    refusal_rules: Counter[str] = field(default_factory=Counter)
    refusal_tenants: Counter[str] = field(default_factory=Counter)
    verification: dict[str, str] = field(default_factory=dict)


async def build_report(
    store: AuditStore,
    since: str | None,
    until: str | None,
    public_key: Ed25519PublicKey | None = None,
) -> AuditReport:
    report = AuditReport(since, until)
    stored = await store.read(Query(since=since, until=until))
    for record in requests_of(orjson.loads(s.body) for s in stored):
        report.total += 1
        report.decisions[str(record.get("decision"))] += 1
        dep = record.get("deployment")
        if dep:
            report.countries[dep["inference_country"]] += 1
            report.jurisdictions[dep["operator_control_chain"][-1]] += 1
            report.weights[dep.get("weights_origin") or "unknown"] += 1
        if record.get("decision") == "refused":
            report.refusal_tenants[str(record.get("tenant"))] += 1
            candidates = (record.get("refusal") or {}).get("candidates", [])
            for rule in {r for c in candidates for r in c["failed_rules"]}:
                report.refusal_rules[rule] += 1
    for log_id in await store.log_ids():
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


SECTIONS = [
    ("Decisions", "decisions"),
    ("Inference country", "countries"),
    ("Operator's ultimate jurisdiction", "jurisdictions"),
    ("Weights origin", "weights"),
    ("Refusals by rule", "refusal_rules"),
    ("Refusals by tenant", "refusal_tenants"),
]


def render_text(report: AuditReport) -> str:
    lines = [
        f"Audit report {report.since or 'start'} .. {report.until or 'now'}: "
        f"{report.total} request(s)"
    ]
    for title, name in SECTIONS:
        counts: Counter[str] = getattr(report, name)
        lines.append(f"\n{title}")
        lines.extend(f"  {key:<28} {value:>8}" for key, value in counts.most_common())
        if not counts:
            lines.append("  (none)")
    lines.append("\nVerification")
    lines.extend(f"  {log_id}: {state}" for log_id, state in report.verification.items())
    return "\n".join(lines)


def _bars(counts: Counter[str]) -> str:
    if not counts:
        return "<p>none</p>"
    top = max(counts.values())
    rows = counts.most_common()
    height = 22 * len(rows)
    parts = [f'<svg width="640" height="{height}" role="img">']
    for i, (key, value) in enumerate(rows):
        width = max(1, round(400 * value / top))
        y = i * 22
        parts.append(
            f'<text x="0" y="{y + 15}">{html.escape(key)}</text>'
            f'<rect x="200" y="{y + 3}" width="{width}" height="16" fill="#2b6cb0"/>'
            f'<text x="{205 + width}" y="{y + 15}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: AuditReport) -> str:
    body = [
        f"<h1>Audit report</h1><p>{html.escape(report.since or 'start')} to "
        f"{html.escape(report.until or 'now')}: {report.total} request(s)</p>"
    ]
    for title, name in SECTIONS:
        body.append(f"<h2>{html.escape(title)}</h2>{_bars(getattr(report, name))}")
    body.append("<h2>Verification</h2><ul>")
    body.extend(
        f"<li>{html.escape(log_id)}: {html.escape(state)}</li>"
        for log_id, state in report.verification.items()
    )
    body.append("</ul>")
    style = "body{font-family:sans-serif;max-width:720px;margin:2em auto}text{font-size:13px}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Audit report</title><style>{style}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
