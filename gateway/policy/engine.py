"""The policy engine: pure evaluation of a tenant's rules over the catalog.

`evaluate_deployment` takes (rules, deployment, policy, today) and does no I/O and reads no clock.
Deny by default: a deployment is eligible only if every rule passes, and a missing fact fails the
rule that needs it. Every result carries a reason in words, for the 403 body, the CLI and the audit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.policy.model import PolicySet
from gateway.policy.schema import Backend, Deployment, Model, PlaceRule, Rules


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CandidateResult:
    deployment: Deployment
    results: tuple[RuleResult, ...]

    @property
    def eligible(self) -> bool:
        return all(r.passed for r in self.results)

    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.passed)


def evaluate_deployment(
    rules: Rules, deployment: Deployment, policy: PolicySet, today: dt.date
) -> CandidateResult:
    backend = policy.catalog.backends[deployment.backend]
    model = policy.catalog.models[deployment.model]
    results: list[RuleResult] = []
    if rules.inference_country is not None:
        results.append(
            _place_rule(
                "inference_country",
                rules.inference_country,
                (backend.country,),
                policy,
                f"inference runs in {backend.country}",
            )
        )
    if rules.operator_control is not None:
        chain = backend.operator.control_chain()
        names = [backend.operator.name, *(p.name for p in backend.operator.parents)]
        described = ", ".join(f"{n} ({j})" for n, j in zip(names, chain, strict=True))
        results.append(
            _place_rule(
                "operator_control",
                rules.operator_control,
                chain,
                policy,
                f"operator control chain: {described}",
            )
        )
    if rules.weights_origin is not None:
        origin = model.developer_country
        results.append(
            _place_rule(
                "weights_origin",
                rules.weights_origin,
                (origin,) if origin else (),
                policy,
                f"weights by {model.developer} ({origin or 'country unknown'})",
            )
        )
    if rules.open_weights:
        results.append(_open_weights(model))
    if rules.self_hosted:
        results.append(_self_hosted(backend, deployment))
    results.extend(
        _attestation(backend, deployment, kind.value, today) for kind in rules.attestations
    )
    return CandidateResult(deployment, tuple(results))


def _place_rule(
    name: str,
    rule: PlaceRule,
    places: tuple[str, ...],
    policy: PolicySet,
    fact: str,
) -> RuleResult:
    if not places:
        return RuleResult(name, False, f"{fact}: the fact is missing, so the rule fails")
    denied = policy.expand(rule.deny)
    hit = [p for p in places if p in denied]
    if hit:
        return RuleResult(name, False, f"{fact}: {', '.join(hit)} is denied by {_list(rule.deny)}")
    if rule.allow is not None:
        allowed = policy.expand(rule.allow)
        outside = [p for p in places if p not in allowed]
        if outside:
            return RuleResult(
                name, False, f"{fact}: {', '.join(outside)} is not in {_list(rule.allow)}"
            )
        return RuleResult(name, True, f"{fact}: within {_list(rule.allow)}")
    return RuleResult(name, True, f"{fact}: none of {_list(rule.deny)}")


def _open_weights(model: Model) -> RuleResult:
    if model.open_weights is True:
        return RuleResult("open_weights", True, f"{model.developer} publishes the weights")
    if model.open_weights is None:
        return RuleResult("open_weights", False, "whether the weights are open is not recorded")
    return RuleResult("open_weights", False, f"{model.developer} does not publish the weights")


def _self_hosted(backend: Backend, deployment: Deployment) -> RuleResult:
    if backend.self_hosted:
        return RuleResult("self_hosted", True, f"{deployment.backend} is self-hosted")
    return RuleResult(
        "self_hosted", False, f"{deployment.backend} is operated by {backend.operator.name}"
    )


def _attestation(backend: Backend, deployment: Deployment, kind: str, today: dt.date) -> RuleResult:
    rule = f"attestation:{kind}"
    held = [a for a in backend.attestations if a.kind == kind]
    if not held:
        return RuleResult(rule, False, f"{deployment.backend} has no {kind} attestation")
    valid = [a for a in held if a.expires > today]
    if not valid:
        last = max(a.expires for a in held)
        return RuleResult(rule, False, f"{kind} attestation of {deployment.backend} expired {last}")
    best = max(valid, key=lambda a: a.expires)
    return RuleResult(rule, True, f"{kind} valid until {best.expires} ({best.evidence})")


def _list(places: list[str] | None) -> str:
    return "[" + ", ".join(places or ()) + "]"
