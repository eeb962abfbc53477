"""Read a policy directory into a validated `PolicySet`, or into errors naming file, line, field.

Layout of a policy directory:
    groups.yaml        country groups (EU, EEA, ...)
    catalog.yaml       backends, models, deployments
    tenants/*.yaml     one tenant per file
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

from gateway.policy.iso3166 import ISO_3166_ALPHA2, did_you_mean
from gateway.policy.model import PolicySet
from gateway.policy.schema import (
    GROUP_PATTERN,
    Backend,
    Catalog,
    CountryGroup,
    GroupsFile,
    PlaceRule,
    Rules,
    Tenant,
)
from gateway.problems import InvalidFiles, Problem
from gateway.yamlfile import Source, at, parse, read


class PolicyLoadError(InvalidFiles):
    """The policy directory does not validate; `problems` says where and why."""


def policy_files(directory: Path) -> list[Path]:
    """The files that make up a policy directory (those that exist)."""
    fixed = [p for p in (directory / "groups.yaml", directory / "catalog.yaml") if p.is_file()]
    return [*fixed, *sorted((directory / "tenants").glob("*.y*ml"))]


def load_policy_dir(directory: Path) -> PolicySet:
    """Load and validate every file; raise `PolicyLoadError` listing every problem found."""
    problems: list[Problem] = []
    if not directory.is_dir():
        raise PolicyLoadError([Problem(str(directory), None, "-", "not a directory")])
    groups_src = read(directory, directory / "groups.yaml", problems)
    catalog_src = read(directory, directory / "catalog.yaml", problems)
    tenant_srcs = [
        read(directory, p, problems) for p in sorted((directory / "tenants").glob("*.y*ml"))
    ]
    sources = [s for s in (groups_src, catalog_src, *tenant_srcs) if s is not None]
    groups_file = parse(groups_src, GroupsFile, problems)
    catalog = parse(catalog_src, Catalog, problems)
    tenants: dict[str, Tenant] = {}
    tenant_sources: dict[str, Source] = {}
    for src in tenant_srcs:
        tenant = parse(src, Tenant, problems)
        if tenant is None or src is None:
            continue
        if tenant.tenant in tenants:
            problems.append(at(src, ("tenant",), f"tenant {tenant.tenant!r} is defined twice"))
            continue
        tenants[tenant.tenant] = tenant
        tenant_sources[tenant.tenant] = src
    if problems or groups_file is None or catalog is None or groups_src is None:
        raise PolicyLoadError(problems)
    assert catalog_src is not None
    groups = _flatten_groups(groups_file.groups, groups_src, problems)
    _check_catalog(catalog, catalog_src, problems)
    for name, tenant in tenants.items():
        _check_tenant(tenant, tenant_sources[name], groups, problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PolicyLoadError(problems)
    return PolicySet(
        revision=_revision(directory, sources),
        groups=groups,
        catalog=catalog,
        tenants=tenants,
        warnings=tuple(problems),
        tenant_files={name: src.label for name, src in tenant_sources.items()},
    )


def _not_iso(code: str) -> str:
    return f"{code!r} is not ISO 3166-1{did_you_mean(code)}"


def _flatten_groups(
    groups: dict[str, CountryGroup], src: Source, problems: list[Problem]
) -> dict[str, frozenset[str]]:
    for name, group in groups.items():
        if not GROUP_PATTERN.match(name) or name in ISO_3166_ALPHA2:
            problems.append(
                at(
                    src,
                    ("groups", name),
                    "group names are 2-32 upper-case letters, digits or _"
                    " and must not be a country code",
                )
            )
        for i, code in enumerate(group.countries):
            if code not in ISO_3166_ALPHA2:
                problems.append(at(src, ("groups", name, "countries", str(i)), _not_iso(code)))
        for i, inc in enumerate(group.include):
            if inc not in groups:
                problems.append(
                    at(src, ("groups", name, "include", str(i)), f"unknown group {inc!r}")
                )
    flat: dict[str, frozenset[str]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> frozenset[str]:
        if name in flat:
            return flat[name]
        if name in stack:
            problems.append(at(src, ("groups", name), f"groups include each other: {stack}"))
            return frozenset()
        group = groups[name]
        members = set(group.countries)
        for inc in group.include:
            if inc in groups:
                members |= resolve(inc, (*stack, name))
        flat[name] = frozenset(members)
        return flat[name]

    for name in groups:
        resolve(name, ())
    return flat


# what each litellm provider needs besides its URL, so that a request never fails for want of it
PROVIDER_NEEDS = MappingProxyType({"bedrock": ("region",), "vertex_ai": ("region", "project")})


def _check_provider(
    backend: Backend, src: Source, base: tuple[str, ...], problems: list[Problem]
) -> None:
    if not backend.provider:
        problems.append(at(src, (*base, "provider"), "a litellm backend needs `provider`"))
        return
    for needed in PROVIDER_NEEDS.get(backend.provider, ()):
        if getattr(backend, needed) is None:
            problems.append(
                at(src, (*base, needed), f"a {backend.provider} backend needs `{needed}`")
            )


def _check_catalog(catalog: Catalog, src: Source, problems: list[Problem]) -> None:
    for name, backend in catalog.backends.items():
        base = ("backends", name)
        if backend.country not in ISO_3166_ALPHA2:
            problems.append(at(src, (*base, "country"), _not_iso(backend.country)))
        chain = [("operator", "jurisdiction")] + [
            ("operator", "parents", str(i), "jurisdiction")
            for i in range(len(backend.operator.parents))
        ]
        for loc, code in zip(chain, backend.operator.control_chain(), strict=True):
            if code not in ISO_3166_ALPHA2:
                problems.append(at(src, (*base, *loc), _not_iso(code)))
        if backend.kind == "litellm":
            _check_provider(backend, src, base, problems)
    for name, model in catalog.models.items():
        origin = model.developer_country
        if origin is not None and origin not in ISO_3166_ALPHA2:
            problems.append(at(src, ("models", name, "developer_country"), _not_iso(origin)))
    seen: set[str] = set()
    for i, dep in enumerate(catalog.deployments):
        base = ("deployments", str(i))
        if dep.model not in catalog.models:
            problems.append(at(src, (*base, "model"), f"unknown model {dep.model!r}"))
        if dep.backend not in catalog.backends:
            problems.append(at(src, (*base, "backend"), f"unknown backend {dep.backend!r}"))
        if dep.id in seen:
            problems.append(at(src, base, f"deployment {dep.id} is listed twice"))
        seen.add(dep.id)


def _check_tenant(
    tenant: Tenant, src: Source, groups: dict[str, frozenset[str]], problems: list[Problem]
) -> None:
    def check_rules(rules: Rules, base: tuple[str, ...]) -> None:
        for rule_name in ("inference_country", "operator_control", "weights_origin"):
            rule: PlaceRule | None = getattr(rules, rule_name)
            if rule is None:
                continue
            for kind in ("allow", "deny"):
                for i, place in enumerate(getattr(rule, kind) or ()):
                    if place not in ISO_3166_ALPHA2 and place not in groups:
                        problems.append(
                            at(
                                src,
                                (*base, rule_name, kind, str(i)),
                                f"{place!r} is neither an ISO 3166-1 code nor a known group"
                                + did_you_mean(place),
                            )
                        )

    check_rules(tenant.rules, ("rules",))
    for name, data_class in tenant.data_classes.items():
        check_rules(data_class.rules, ("data_classes", name, "rules"))


def _revision(root: Path, sources: Iterable[Source]) -> str:
    digest = hashlib.sha256()
    for src in sorted(sources, key=lambda s: s.label):
        digest.update(src.label.encode() + b"\0" + src.text.encode() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]
