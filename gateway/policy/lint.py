"""Warnings about a policy that loads but probably does not say what its author meant.

- an entry of a tenant's allowed models (a name, or a pattern of which no match) or an alias that
  no deployment can serve under the tenant's rules;
- an allow-list pattern that admits models of more than one developer or weights origin (a model
  added to the catalog later joins it unseen);
- names that refer to nothing: model patterns matching no model, alias targets that are not
  models or not allowed;
- attestations that expire within `EXPIRY_WARNING_DAYS` days, or have expired.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Mapping
from pathlib import Path

from gateway.policy.compile import CompiledPolicy
from gateway.policy.schema import Model
from gateway.problems import Problem
from gateway.yamlfile import locate

EXPIRY_WARNING_DAYS = 30
MIXED_LISTED = 6  # models named in a warning about a pattern that mixes developers or origins


def lint(directory: Path, compiled: CompiledPolicy) -> list[Problem]:
    policy = compiled.policy
    problems: list[Problem] = []

    def warn(label: str, loc: tuple[str, ...], message: str) -> None:
        problems.append(locate(directory, label, loc, message, "warning"))

    models = policy.catalog.models
    for name, tenant in sorted(policy.tenants.items()):
        label = policy.tenant_files.get(name, f"tenants/{name}.yaml")
        for i, pattern in enumerate(tenant.models):
            if not any(fnmatch.fnmatchcase(m, pattern) for m in models):
                warn(label, ("models", str(i)), f"{pattern!r} matches no model in the catalog")
        for i, pattern in enumerate(tenant.models):
            mixed = _mixed_origins(pattern, models)
            if mixed:
                warn(label, ("models", str(i)), mixed)
        for alias, targets in tenant.aliases.items():
            if alias in models:
                warn(label, ("aliases", alias), f"alias {alias!r} hides the model of that name")
            for i, target in enumerate(targets):
                if target not in models:
                    warn(label, ("aliases", alias, str(i)), f"unknown model {target!r}")
                elif not any(fnmatch.fnmatchcase(target, p) for p in tenant.models):
                    warn(
                        label,
                        ("aliases", alias, str(i)),
                        f"{target!r} is not in this tenant's allowed models, so the alias skips it",
                    )
        reachable = set(compiled.models_for(name))
        for i, pattern in enumerate(tenant.models):
            matched = [m for m in models if fnmatch.fnmatchcase(m, pattern)]
            if matched and not reachable.intersection(matched):
                what = pattern if pattern in models else f"{pattern!r} ({len(matched)} models)"
                warn(
                    label,
                    ("models", str(i)),
                    f"{what} is allowed but no deployment passes this tenant's rules"
                    f" (see `policy explain --tenant {name} --model {matched[0]}`)",
                )
        for alias in tenant.aliases:
            if alias not in reachable:
                warn(label, ("aliases", alias), f"alias {alias} reaches no eligible deployment")
    problems.extend(_expiring(directory, compiled))
    return problems


def _mixed_origins(pattern: str, models: Mapping[str, Model]) -> str | None:
    """A warning when one pattern admits models of more than one developer or weights origin:
    a model added to the catalog later joins every allow-list whose pattern it matches (the
    pattern `*` alone says "every model" and is not warned about)."""
    if pattern == "*" or not any(c in pattern for c in "*?["):
        return None
    matched = sorted(m for m in models if fnmatch.fnmatchcase(m, pattern))
    developers = {models[m].developer.strip().casefold() for m in matched}
    origins = {models[m].developer_country for m in matched}
    if len(developers) < 2 and len(origins) < 2:
        return None
    listed = "; ".join(
        f"{m} ({models[m].developer}, {models[m].developer_country or 'origin not recorded'})"
        for m in matched[:MIXED_LISTED]
    )
    more = f"; and {len(matched) - MIXED_LISTED} more" if len(matched) > MIXED_LISTED else ""
    return (
        f"{pattern!r} admits models of {len(developers)} developer(s) and {len(origins)} weights"
        f" origin(s): {listed}{more}; list the models by name, or narrow the pattern"
    )


def _expiring(directory: Path, compiled: CompiledPolicy) -> list[Problem]:
    today = compiled.compiled_on
    soon = today + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    out: list[Problem] = []
    for name, backend in compiled.policy.catalog.backends.items():
        for i, att in enumerate(backend.attestations):
            loc = ("backends", name, "attestations", str(i), "expires")
            if att.expires <= today:
                message = f"{att.kind} of {name} expired on {att.expires}; it counts as absent"
            elif att.expires <= soon:
                days = (att.expires - today).days
                message = f"{att.kind} of {name} expires on {att.expires}, in {days} days"
            else:
                continue
            out.append(locate(directory, "catalog.yaml", loc, message, "warning"))
    return out
