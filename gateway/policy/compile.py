"""Compile a `PolicySet` into lookup tables, so that a request costs dictionary lookups.

Tenants that share a rule set share its table: rule set x model -> candidates with their results.
Tables are correct until the next attestation expiry (`valid_until`), after which the holder
recompiles. Compilation is pure: `today` is an argument.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.policy.engine import CandidateResult, RuleResult, evaluate_deployment
from gateway.policy.load import PolicySet
from gateway.policy.schema import Deployment, Rules, Tenant


@dataclass(frozen=True, slots=True)
class Route:
    """What a tenant asking for a model (or alias) under a data class may use, and why."""

    tenant: str
    requested: str
    models: tuple[str, ...]
    data_class: str | None
    revision: str
    candidates: tuple[CandidateResult, ...]
    eligible: tuple[Deployment, ...]


@dataclass(frozen=True, slots=True)
class _TenantTable:
    tenant: Tenant
    allowed: frozenset[str]
    rule_keys: dict[str | None, tuple[str, ...]]


class CompiledPolicy:
    def __init__(self, policy: PolicySet, today: dt.date) -> None:
        self.policy = policy
        self.revision = policy.revision
        self.compiled_on = today
        self.valid_until = _next_expiry(policy, today)
        self._by_model: dict[str, list[Deployment]] = {}
        for dep in sorted(policy.catalog.deployments, key=lambda d: d.priority):
            self._by_model.setdefault(dep.model, []).append(dep)
        self._results: dict[tuple[str, str], tuple[CandidateResult, ...]] = {}
        self._rule_sets: dict[str, Rules] = {}
        self._tenants = {name: self._compile_tenant(t) for name, t in policy.tenants.items()}
        self._routes: dict[tuple[str, str, str | None], Route] = {}
        for name, table in self._tenants.items():
            for data_class in table.rule_keys:
                for requested in (*sorted(table.allowed), *table.tenant.aliases):
                    self._routes[(name, requested, data_class)] = self._route(
                        table, requested, data_class
                    )

    def is_current(self, today: dt.date) -> bool:
        return self.valid_until is None or today < self.valid_until

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    def route(self, tenant: str, requested: str, data_class: str | None) -> Route:
        """The compiled route; raises for unknown models and unknown data classes."""
        table = self._tenants[tenant]
        if data_class is None:
            data_class = table.tenant.default_data_class
        elif data_class not in table.rule_keys:
            known = ", ".join(sorted(k for k in table.rule_keys if k)) or "none"
            raise InvalidRequest(
                f"unknown data classification {data_class!r}; this tenant knows: {known}",
                param="x-data-classification",
                code="unknown_data_class",
            )
        found = self._routes.get((tenant, requested, data_class))
        if found is not None:
            return found
        if requested not in self.policy.catalog.models:
            raise ModelNotFound(f"The model {requested!r} does not exist", param="model")
        return self._route(table, requested, data_class)

    def models_for(self, tenant: str) -> list[str]:
        """Public names (models and aliases) this tenant can reach under its default class."""
        table = self._tenants.get(tenant)
        if table is None:
            return []
        data_class = table.tenant.default_data_class
        names = [*sorted(table.allowed), *sorted(table.tenant.aliases)]
        return [n for n in names if self._routes[(tenant, n, data_class)].eligible]

    def _compile_tenant(self, tenant: Tenant) -> _TenantTable:
        allowed = frozenset(
            m
            for m in self.policy.catalog.models
            if any(fnmatch.fnmatchcase(m, pattern) for pattern in tenant.models)
        )
        rule_keys: dict[str | None, tuple[str, ...]] = {None: (self._rule_key(tenant.rules),)}
        for name, data_class in tenant.data_classes.items():
            rule_keys[name] = (*rule_keys[None], self._rule_key(data_class.rules))
        return _TenantTable(tenant, allowed, rule_keys)

    def _rule_key(self, rules: Rules) -> str:
        key = rules.model_dump_json()
        self._rule_sets.setdefault(key, rules)
        return key

    def _results_for(self, rule_key: str, model: str) -> tuple[CandidateResult, ...]:
        cached = self._results.get((rule_key, model))
        if cached is None:
            rules = self._rule_sets[rule_key]
            cached = tuple(
                evaluate_deployment(rules, dep, self.policy, self.compiled_on)
                for dep in self._by_model.get(model, ())
            )
            self._results[(rule_key, model)] = cached
        return cached

    def _route(self, table: _TenantTable, requested: str, data_class: str | None) -> Route:
        tenant = table.tenant
        models = tuple(tenant.aliases.get(requested, (requested,)))
        keys = table.rule_keys[data_class]
        candidates: list[CandidateResult] = []
        for model in models:
            allow = _allowlist_result(model, model in table.allowed, tenant)
            per_key = [self._results_for(key, model) for key in keys]
            for i, dep in enumerate(self._by_model.get(model, ())):
                results = [allow]
                for k, key_results in enumerate(per_key):
                    prefix = "" if k == 0 else f"data_class[{data_class}]."
                    results.extend(
                        RuleResult(prefix + r.rule, r.passed, r.reason)
                        for r in key_results[i].results
                    )
                candidates.append(CandidateResult(dep, tuple(results)))
        eligible = tuple(c.deployment for c in candidates if c.eligible)
        return Route(
            tenant=tenant.tenant,
            requested=requested,
            models=models,
            data_class=data_class,
            revision=self.revision,
            candidates=tuple(candidates),
            eligible=eligible,
        )


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
