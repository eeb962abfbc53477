"""Property tests: over random catalogs and tenants, the compiled lookup returns exactly the
deployments that satisfy every rule, as judged by a separate, naive reading of the rules."""

from __future__ import annotations

import datetime as dt
import fnmatch
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision
from gateway.policy.model import PolicySet
from gateway.policy.schema import (
    AttestationKind,
    Backend,
    Catalog,
    Deployment,
    Model,
    PlaceRule,
    Rules,
    Tenant,
)

TODAY = dt.date(2026, 11, 23)
COUNTRIES = ["FR", "DE", "IE", "LU", "NO", "US", "CN", "CH"]
GROUPS = {
    "EU": frozenset({"FR", "DE", "IE", "LU"}),
    "EEA": frozenset({"FR", "DE", "IE", "LU", "NO"}),
}
PLACES = COUNTRIES + list(GROUPS)
KINDS = list(AttestationKind)

places = st.lists(st.sampled_from(PLACES), max_size=3, unique=True)
place_rule = st.one_of(
    st.none(),
    st.builds(lambda a, d: {"allow": a, "deny": d}, places, places),
    st.builds(lambda d: {"deny": d}, places.filter(bool)),
)
rules = st.fixed_dictionaries(
    {
        "inference_country": place_rule,
        "operator_control": place_rule,
        "weights_origin": place_rule,
        "open_weights": st.sampled_from([None, True]),
        "self_hosted": st.sampled_from([None, True]),
        "attestations": st.lists(st.sampled_from(KINDS), max_size=2, unique=True),
    }
)
backend = st.fixed_dictionaries(
    {
        "country": st.sampled_from(COUNTRIES),
        "chain": st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3),
        "self_hosted": st.booleans(),
        "attestations": st.lists(
            st.tuples(st.sampled_from(KINDS), st.integers(-40, 40)), max_size=3
        ),
    }
)
model = st.fixed_dictionaries(
    {
        "origin": st.one_of(st.none(), st.sampled_from(COUNTRIES)),
        "open": st.sampled_from([None, True, False]),
    }
)


@st.composite
def policies(draw: st.DrawFn) -> PolicySet:
    backends: list[dict[str, Any]] = draw(st.lists(backend, min_size=1, max_size=5))
    models: list[dict[str, Any]] = draw(st.lists(model, min_size=1, max_size=4))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, len(models) - 1), st.integers(0, len(backends) - 1)),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    catalog = Catalog(
        backends={
            f"b{i}": Backend.model_validate(
                {
                    "kind": "vllm",
                    "base_url": f"http://127.0.0.1:{9000 + i}/v1",
                    "country": b["country"],
                    "operator": {
                        "name": f"op{i}",
                        "jurisdiction": b["chain"][0],
                        "parents": [
                            {"name": f"p{i}{j}", "jurisdiction": c}
                            for j, c in enumerate(b["chain"][1:])
                        ],
                    },
                    "self_hosted": b["self_hosted"],
                    "attestations": [
                        {"kind": k, "expires": TODAY + dt.timedelta(days=d), "evidence": "x"}
                        for k, d in b["attestations"]
                    ],
                }
            )
            for i, b in enumerate(backends)
        },
        models={
            f"m{i}": Model(developer="dev", developer_country=m["origin"], open_weights=m["open"])
            for i, m in enumerate(models)
        },
        deployments=[
            Deployment(model=f"m{m}", backend=f"b{b}", upstream_model="x", priority=(m + b) % 2)
            for m, b in pairs
        ],
    )
    tenants = {}
    for t in range(draw(st.integers(1, 3))):
        classes = draw(st.lists(rules, max_size=2))
        tenants[f"t{t}"] = Tenant.model_validate(
            {
                "tenant": f"t{t}",
                "models": draw(
                    st.lists(
                        st.sampled_from(["*", "m0", "m1", "m2", "m[13]"]), min_size=1, max_size=2
                    )
                ),
                "rules": draw(rules),
                "data_classes": {f"c{i}": {"rules": r} for i, r in enumerate(classes)},
                "aliases": {"any": [f"m{i}" for i in reversed(range(len(models)))]},
            }
        )
    return PolicySet("sha256:test", dict(GROUPS), catalog, tenants)


def _expand(values: list[str] | None) -> set[str]:
    out: set[str] = set()
    for v in values or []:
        out |= GROUPS.get(v, {v})
    return out


def _place_ok(rule: PlaceRule | None, facts: list[str]) -> bool:
    if rule is None:
        return True
    if not facts:
        return False
    for fact in facts:
        if fact in _expand(rule.deny):
            return False
        if rule.allow is not None and fact not in _expand(rule.allow):
            return False
    return True


def _satisfies(r: Rules, b: Backend, m: Model) -> bool:
    chain = [b.operator.jurisdiction, *(p.jurisdiction for p in b.operator.parents)]
    held = {a.kind for a in b.attestations if a.expires > TODAY}
    return (
        _place_ok(r.inference_country, [b.country])
        and _place_ok(r.operator_control, chain)
        and _place_ok(r.weights_origin, [m.developer_country] if m.developer_country else [])
        and (r.open_weights is None or m.open_weights is True)
        and (r.self_hosted is None or b.self_hosted)
        and all(k in held for k in r.attestations)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_eligible_is_exactly_what_satisfies_every_rule(policy: PolicySet) -> None:
    compiled = CompiledPolicy(policy, TODAY)
    catalog = policy.catalog
    for name, tenant in policy.tenants.items():
        for data_class in [None, *tenant.data_classes]:
            extra = tenant.data_classes[data_class].rules if data_class else Rules()
            for requested in [*catalog.models, "any"]:
                route = compiled.route(name, requested, data_class)
                models = tenant.aliases.get(requested, [requested])
                expected = [
                    d.id
                    for m in models
                    if any(fnmatch.fnmatchcase(m, p) for p in tenant.models)
                    for d in sorted(catalog.deployments, key=lambda d: d.priority)
                    if d.model == m
                    and _satisfies(tenant.rules, catalog.backends[d.backend], catalog.models[m])
                    and _satisfies(extra, catalog.backends[d.backend], catalog.models[m])
                ]
                assert [d.id for d in route.eligible] == expected
                explained = [c.deployment.id for c in Decision(route).candidates if c.eligible]
                assert explained == expected
