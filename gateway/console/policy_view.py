"""The policy page: the revision in force, what each tenant may use (tenant x model ->
deployments, or the rule that refuses), and what changed since the previous revision."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision
from gateway.policy.diff import Change, diff

MAX_TENANTS = 200


@dataclass
class Cell:
    eligible: tuple[str, ...]
    refusing: tuple[str, ...] = ()  # rule ids that refuse every candidate, commonest first
    unknown: bool = False


def cell(compiled: CompiledPolicy, tenant: str, name: str) -> Cell:
    try:
        route = compiled.route(tenant, name, None)
    except GatewayError:
        return Cell((), unknown=True)
    if route.eligible:
        return Cell(tuple(d.id for d in route.eligible))
    failing: Counter[str] = Counter()
    for candidate in Decision(route).candidates:
        failing.update(r.rule for r in candidate.failures())
    return Cell((), tuple(rule for rule, _ in failing.most_common()))


@dataclass
class TenantRoutes:
    tenant: str
    rows: list[tuple[str, Cell]]  # every name the tenant may ask for: its models, then aliases
    not_allowed: list[str]  # catalog models outside the tenant's list


@dataclass
class Matrix:
    tenants: list[TenantRoutes]
    hidden: int  # tenants left out (too many, or not matching the filter)


def matrix(compiled: CompiledPolicy, wanted: str | None) -> Matrix:
    tenants = sorted(compiled.policy.tenants)
    shown = [t for t in tenants if not wanted or wanted.lower() in t.lower()][:MAX_TENANTS]
    models = sorted(compiled.policy.catalog.models)
    out = []
    for tenant in shown:
        names = compiled.public_names(tenant)
        rows = [(name, cell(compiled, tenant, name)) for name in names]
        out.append(TenantRoutes(tenant, rows, [m for m in models if m not in names]))
    return Matrix(out, len(tenants) - len(shown))


def changes(previous: CompiledPolicy | None, current: CompiledPolicy) -> list[Change] | None:
    return None if previous is None else diff(previous, current)
