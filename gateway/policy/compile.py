"""Compile a `PolicySet` into bitsets, so that a request costs lookups, not an evaluation.

Deployments are numbered; every single rule a tenant uses (one place rule, one attestation kind...)
is evaluated once over all deployments into an integer bitset. A tenant's eligible set under a
data class is the AND of the bitsets of its rules, computed at load. A request then costs a dict
lookup, a set membership test for the allow-list and one bit test per deployment of the model.

Explanations (every candidate with every rule and its reason) are not stored: `explain` runs the
pure engine on demand, once per refused request (`gateway/policy/decision.py`), for `policy
explain` and the admin API. Tests check that both paths agree.

Tables are correct until the next attestation expiry (`valid_until`), after which the holder
recompiles. Compilation is pure: `today` is an argument.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.policy.engine import CandidateResult, RuleResult, evaluate_deployment
from gateway.policy.facts import deployment_facts
from gateway.policy.model import PolicySet
from gateway.policy.schema import AttestationKind, Deployment, Rules, Tenant

DATA_CLASS_PREFIX = "data_class[{}]."
ROUTE_CACHE_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class Route:
    """What a tenant asking for a model (or alias) under a data class may use."""

    tenant: str
    requested: str
    models: tuple[str, ...]
    data_class: str | None
    revision: str
    eligible: tuple[Deployment, ...]
    compiled: CompiledPolicy
    allow_listed: bool = True  # some requested model is on the tenant's allow-list


@dataclass(frozen=True, slots=True)
class _TenantTable:
    tenant: Tenant
    allowed: frozenset[str]
    masks: dict[str | None, int]


class CompiledPolicy:
    def __init__(self, policy: PolicySet, today: dt.date) -> None:
        self.policy = policy
        self.revision = policy.revision
        self.compiled_on = today
        self.valid_until = _next_expiry(policy, today)
        self.facts = deployment_facts(policy.catalog)
        ordered = sorted(policy.catalog.deployments, key=lambda d: d.priority)
        self._deployments = tuple(ordered)
        self._all = (1 << len(ordered)) - 1
        self._by_model: dict[str, tuple[tuple[int, Deployment], ...]] = {}
        for bit, dep in enumerate(ordered):
            self._by_model[dep.model] = (*self._by_model.get(dep.model, ()), (bit, dep))
        self._rule_masks: dict[str, int] = {}
        self._pattern_matches: dict[str, frozenset[str]] = {}
        self._allowed_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._tenants = {name: self._compile_tenant(t) for name, t in policy.tenants.items()}
        self._routes: dict[tuple[str, str, str | None], Route] = {}

    # ---- lookups (the request path) ----------------------------------------------------------

    def is_current(self, today: dt.date) -> bool:
        return self.valid_until is None or today < self.valid_until

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    def route(self, tenant: str, requested: str, data_class: str | None) -> Route:
        """The route for a request; raises for unknown models and unknown data classes.

        Routes asked for are kept (up to `ROUTE_CACHE_SIZE`, then the cache starts over), so
        the usual request costs one dict lookup."""
        key = (tenant, requested, data_class)
        found = self._routes.get(key)
        if found is not None:
            return found
        table = self._tenants[tenant]
        data_class = self._data_class(table, data_class)
        models = self._models_of(table, requested)
        route = Route(
            tenant=tenant,
            requested=requested,
            models=models,
            data_class=data_class,
            revision=self.revision,
            eligible=self._eligible(table, models, table.masks[data_class]),
            compiled=self,
            allow_listed=any(model in table.allowed for model in models),
        )
        if len(self._routes) >= ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[key] = route
        return route

    def models_for(self, tenant: str) -> list[str]:
        """Public names (models and aliases) this tenant can reach under its default class."""
        table = self._tenants.get(tenant)
        if table is None:
            return []
        mask = table.masks[table.tenant.default_data_class]
        names = [*sorted(table.allowed), *sorted(table.tenant.aliases)]
        return [n for n in names if self._eligible(table, self._models_of(table, n), mask)]

    def data_classes(self, tenant: str) -> list[str]:
        table = self._tenants.get(tenant)
        return sorted(k for k in table.masks if k) if table else []

    def public_names(self, tenant: str) -> list[str]:
        """Every name a tenant may ask for, eligible or not: allowed models, then aliases."""
        table = self._tenants[tenant]
        return [*sorted(table.allowed), *sorted(table.tenant.aliases)]

    def _data_class(self, table: _TenantTable, data_class: str | None) -> str | None:
        if data_class is None:
            return table.tenant.default_data_class
        if data_class not in table.masks:
            known = ", ".join(sorted(k for k in table.masks if k)) or "none"
            raise InvalidRequest(
                f"unknown data classification {data_class!r}; this tenant knows: {known}",
                param="x-data-classification",
                code="unknown_data_class",
            )
        return data_class

    def _models_of(self, table: _TenantTable, requested: str) -> tuple[str, ...]:
        alias = table.tenant.aliases.get(requested)
        if alias is not None:
            return tuple(alias)
        if requested not in self.policy.catalog.models:
            raise ModelNotFound(f"The model {requested!r} does not exist", param="model")
        return (requested,)

    def _eligible(
        self, table: _TenantTable, models: tuple[str, ...], mask: int
    ) -> tuple[Deployment, ...]:
        return tuple(
            dep
            for model in models
            if model in table.allowed
            for bit, dep in self._by_model.get(model, ())
            if mask >> bit & 1
        )

    # ---- explanations (refusals, explain, admin API) -----------------------------------------

    def explain(
        self, tenant: str, requested: str, data_class: str | None
    ) -> tuple[CandidateResult, ...]:
        """Every candidate deployment with every rule's result and reason (the pure engine)."""
        table = self._tenants[tenant]
        data_class = self._data_class(table, data_class)
        rule_sets: list[tuple[str, Rules]] = [("", table.tenant.rules)]
        if data_class is not None:
            rule_sets.append(
                (
                    DATA_CLASS_PREFIX.format(data_class),
                    table.tenant.data_classes[data_class].rules,
                )
            )
        candidates: list[CandidateResult] = []
        for model in self._models_of(table, requested):
            allow = _allowlist_result(model, model in table.allowed, table.tenant)
            for _, dep in self._by_model.get(model, ()):
                results = [allow]
                for prefix, rules in rule_sets:
                    found = evaluate_deployment(rules, dep, self.policy, self.compiled_on)
                    results.extend(
                        RuleResult(prefix + r.rule, r.passed, r.reason) for r in found.results
                    )
                candidates.append(CandidateResult(dep, tuple(results)))
        return tuple(candidates)

    # ---- compilation -------------------------------------------------------------------------

    def _compile_tenant(self, tenant: Tenant) -> _TenantTable:
        allowed = self._allowed(tuple(tenant.models))
        base = self._rules_mask(tenant.rules)
        masks: dict[str | None, int] = {None: base}
        for name, data_class in tenant.data_classes.items():
            masks[name] = base & self._rules_mask(data_class.rules)
        return _TenantTable(tenant, allowed, masks)

    def _allowed(self, patterns: tuple[str, ...]) -> frozenset[str]:
        """Models matched by an allow-list; shared by every tenant with the same list."""
        found = self._allowed_sets.get(patterns)
        if found is None:
            found = frozenset().union(*(self._matches(p) for p in patterns))
            self._allowed_sets[patterns] = found
        return found

    def _matches(self, pattern: str) -> frozenset[str]:
        found = self._pattern_matches.get(pattern)
        if found is None:
            models = self.policy.catalog.models
            if not any(c in pattern for c in "*?["):
                found = frozenset((pattern,)) if pattern in models else frozenset()
            else:
                found = frozenset(m for m in models if fnmatch.fnmatchcase(m, pattern))
            self._pattern_matches[pattern] = found
        return found

    def _rules_mask(self, rules: Rules) -> int:
        mask = self._all
        for single in _single_rules(rules):
            mask &= self._single_mask(single)
        return mask

    def _single_mask(self, rules: Rules) -> int:
        key = rules.model_dump_json(exclude_defaults=True)
        mask = self._rule_masks.get(key)
        if mask is None:
            mask = 0
            for bit, dep in enumerate(self._deployments):
                if evaluate_deployment(rules, dep, self.policy, self.compiled_on).eligible:
                    mask |= 1 << bit
            self._rule_masks[key] = mask
        return mask


def _single_rules(rules: Rules) -> list[Rules]:
    """Split a rule set into one `Rules` per rule, so tenants share evaluations rule by rule."""
    singles: list[Rules] = []
    for name in ("inference_country", "operator_control", "weights_origin"):
        if getattr(rules, name) is not None:
            singles.append(Rules.model_validate({name: getattr(rules, name)}))
    if rules.open_weights:
        singles.append(Rules(open_weights=True))
    if rules.self_hosted:
        singles.append(Rules(self_hosted=True))
    singles.extend(Rules(attestations=[AttestationKind(k)]) for k in rules.attestations)
    return singles


def _allowlist_result(model: str, allowed: bool, tenant: Tenant) -> RuleResult:
    patterns = ", ".join(tenant.models)
    if allowed:
        return RuleResult("model_allowlist", True, f"{model} matches [{patterns}]")
    return RuleResult(
        "model_allowlist", False, f"{model} is not in the allowed models [{patterns}]"
    )


def _next_expiry(policy: PolicySet, today: dt.date) -> dt.date | None:
    dates = [
        a.expires
        for b in policy.catalog.backends.values()
        for a in b.attestations
        if a.expires > today
    ]
    return min(dates) if dates else None
