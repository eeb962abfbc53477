"""One request's policy decision, built once, and every way the gateway shows it.

A `Decision` is made from the `Route` the compiled policy gives for (tenant, model, data class).
Allowed, it costs nothing more: the route's eligible deployments are the answer. Refused, the pure
engine runs once to say which rules failed for which candidate, and every rendering reads that one
result, so the 403 a client gets, the audit record, the `policy explain` document and the metrics
labels cannot disagree:

- `error(decision_id)`: the refusal a client receives (403 with every candidate's failed rules and
  reasons, or 404 for a model outside the tenant's allow-list, which is not disclosed);
- `verdict(decision, error)`: `allowed`, `refused` or `error`, and the deciding rule: the audit
  record's `decision` and the metrics' labels;
- `record_refusal()`: the audit record's `refusal` (candidates and the names of their failed rules);
- `explain()`: the document of `policy explain`, the admin API and the console.

A request that was allowed but outlived its policy (a reload took away every deployment left to
try) is refused by `after_reload`, with the rule `policy_changed`.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, ModelNotFound, NoHealthyBackend, PolicyViolation
from gateway.policy.compile import Route
from gateway.policy.engine import CandidateResult

POLICY_CHANGED = "policy_changed"
NO_DEPLOYMENT = "no_deployment"


class Decision:
    __slots__ = ("_candidates", "changed_to", "route")

    def __init__(self, route: Route, changed_to: str | None = None) -> None:
        self.route = route
        self.changed_to = changed_to  # the revision that took the request's deployments away
        self._candidates: tuple[CandidateResult, ...] | None = None

    @property
    def allowed(self) -> bool:
        return bool(self.route.eligible) and self.changed_to is None

    @property
    def candidates(self) -> tuple[CandidateResult, ...]:
        """Every deployment of the requested models with each rule's result, in words: the
        engine runs on first use only, and once."""
        if self._candidates is None:
            route = self.route
            self._candidates = route.compiled.explain(
                route.tenant, route.requested, route.data_class
            )
        return self._candidates

    @property
    def rule(self) -> str:
        """The deciding rule of a refusal: the first failed rule of the first candidate that has
        one; empty when allowed."""
        if self.changed_to is not None:
            return POLICY_CHANGED
        if self.route.eligible:
            return ""
        for candidate in self.candidates:
            failures = candidate.failures()
            if failures:
                return failures[0].rule
        return NO_DEPLOYMENT

    def after_reload(self, revision: str) -> Decision:
        """The same request refused: the policy now in force allows none of what was left."""
        return Decision(self.route, changed_to=revision)

    # ---- renderings ----------------------------------------------------------------------------

    def error(self, decision_id: str) -> GatewayError:
        """What a refused client receives."""
        route = self.route
        if self.changed_to is not None:
            return PolicyViolation(
                f"The policy changed during this request (now {self.changed_to}) "
                f"and allows none of the deployments of {route.requested!r} left to try",
                param="model",
                code=POLICY_CHANGED,
                details={"decision_id": decision_id},
            )
        if not route.allow_listed:  # answered as an unknown model: the catalog is not disclosed
            return ModelNotFound(f"The model {route.requested!r} does not exist", param="model")
        results = self.candidates
        if not results:
            return NoHealthyBackend(f"Model {route.requested!r} has no deployment", param="model")
        summary = "; ".join(
            f"{c.deployment.id}: " + ", ".join(f"{r.rule} ({r.reason})" for r in c.failures())
            for c in results
        )
        return PolicyViolation(
            f"Policy for tenant {route.tenant!r} allows no deployment of {route.requested!r}: "
            + summary,
            param="model",
            details={
                "decision_id": decision_id,
                "policy_revision": route.revision,
                "candidates": [
                    {
                        "deployment": c.deployment.id,
                        "failed": [{"rule": r.rule, "reason": r.reason} for r in c.failures()],
                    }
                    for c in results
                ],
            },
        )

    def record_refusal(self) -> dict[str, Any] | None:
        """The audit record's `refusal`: for a request the policy refused, every candidate and
        the names of the rules it failed."""
        if self.route.eligible:
            return None
        return {
            "candidates": [
                {
                    "deployment": c.deployment.id,
                    "failed_rules": [r.rule for r in c.failures()],
                }
                for c in self.candidates
            ]
        }

    def explain(self) -> dict[str, Any]:
        """Every candidate with its facts and every rule with pass or fail and the reason."""
        route = self.route
        compiled = route.compiled
        catalog = compiled.policy.catalog
        candidates = []
        for cand in self.candidates:
            dep = cand.deployment
            backend = catalog.backends[dep.backend]
            model = catalog.models[dep.model]
            candidates.append(
                {
                    "deployment": dep.id,
                    "model": dep.model,
                    "backend": dep.backend,
                    "priority": dep.priority,
                    "facts": {
                        "inference_country": backend.country,
                        "operator": backend.operator.name,
                        "operator_control_chain": list(backend.operator.control_chain()),
                        "weights_origin": model.developer_country,
                        "self_hosted": backend.self_hosted,
                    },
                    "eligible": cand.eligible,
                    "rules": [
                        {"rule": r.rule, "passed": r.passed, "reason": r.reason}
                        for r in cand.results
                    ],
                }
            )
        return {
            "tenant": route.tenant,
            "requested": route.requested,
            "models": list(route.models),
            "data_class": route.data_class,
            "policy_revision": compiled.revision,
            "evaluated_on": compiled.compiled_on.isoformat(),
            "decision": "allowed" if route.eligible else "refused",
            "eligible": [d.id for d in route.eligible],
            "candidates": candidates,
        }


def verdict(decision: Decision | None, error: GatewayError | None) -> tuple[str, str]:
    """(`allowed` | `refused` | `error`, the deciding rule): the audit record's `decision` and
    the decisions metric's labels. No decision (the request failed before policy was asked):
    `error`, with the error's code as the rule."""
    if decision is None:
        return "error", (error.code or "") if error is not None else ""
    if decision.allowed:
        return "allowed", ""
    return "refused", decision.rule
