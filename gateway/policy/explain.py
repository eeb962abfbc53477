"""The explanation of one decision, shared by `policy explain`, the admin API and 403 bodies.

`explain_route` gives a JSON-ready document: every candidate deployment with its three facts
(inference country, operator control chain, weights origin) and every rule with pass or fail and
the reason in words. `render_text` prints the same document for a terminal.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import NotFound
from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision


def explain_route(
    compiled: CompiledPolicy, tenant: str, requested: str, data_class: str | None
) -> dict[str, Any]:
    """Raises the gateway's own errors for unknown tenants, models and data classes."""
    if not compiled.has_tenant(tenant):
        raise NotFound(f"No tenant {tenant!r} in policy {compiled.revision}", code="unknown_tenant")
    return Decision(compiled.route(tenant, requested, data_class)).explain()


def render_text(doc: dict[str, Any]) -> str:
    data_class = doc["data_class"] or "(none)"
    lines = [
        f"tenant {doc['tenant']} asks for {doc['requested']}"
        + (f" -> {', '.join(doc['models'])}" if doc["models"] != [doc["requested"]] else ""),
        f"data class {data_class}; policy {doc['policy_revision']}; "
        f"evaluated on {doc['evaluated_on']}",
        f"decision: {doc['decision'].upper()}"
        + (f" (in order: {', '.join(doc['eligible'])})" if doc["eligible"] else ""),
    ]
    if not doc["candidates"]:
        lines.append("no deployment serves this model")
    for cand in doc["candidates"]:
        facts = cand["facts"]
        mark = "ELIGIBLE" if cand["eligible"] else "refused"
        lines.append("")
        lines.append(f"{cand['deployment']}  [{mark}]")
        lines.append(
            f"  runs in {facts['inference_country']}, operated by {facts['operator']} "
            f"(control: {' > '.join(facts['operator_control_chain'])}), "
            f"weights from {facts['weights_origin'] or 'unknown'}"
        )
        for rule in cand["rules"]:
            verdict = "pass" if rule["passed"] else "FAIL"
            lines.append(f"  {verdict}  {rule['rule']}: {rule['reason']}")
    return "\n".join(lines)
