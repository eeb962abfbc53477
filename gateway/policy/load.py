"""Read a policy directory into a validated `PolicySet`, or into errors naming file, line, field.

Layout of a policy directory:
    groups.yaml        country groups (EU, EEA, ...)
    catalog.yaml       backends, models, deployments
    tenants/*.yaml     one tenant per file
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.policy.iso3166 import ISO_3166_ALPHA2, did_you_mean
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

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.field}: {self.message}"


class PolicyLoadError(Exception):
    """The policy directory does not validate; `problems` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class PolicySet:
    revision: str
    groups: dict[str, frozenset[str]]
    catalog: Catalog
    tenants: dict[str, Tenant]
    warnings: tuple[Problem, ...] = field(default=())
    tenant_files: dict[str, str] = field(default_factory=dict)

    def expand(self, places: Iterable[str]) -> frozenset[str]:
        """Countries named directly or through groups (groups are already flattened)."""
        out: set[str] = set()
        for place in places:
            out |= self.groups.get(place, frozenset((place,)))
        return frozenset(out)


FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _Source:
    """One file's text and data; its YAML nodes (for line numbers) are built only when needed."""

    path: Path
    label: str
    text: str
    data: Any
    _node: yaml.Node | None = None

    @property
    def node(self) -> yaml.Node | None:
        if self._node is None:
            self._node = yaml.compose(self.text, Loader=yaml.SafeLoader)
        return self._node


def policy_files(directory: Path) -> list[Path]:
    """The files that make up a policy directory (those that exist)."""
    fixed = [p for p in (directory / "groups.yaml", directory / "catalog.yaml") if p.is_file()]
    return [*fixed, *sorted((directory / "tenants").glob("*.y*ml"))]


def load_policy_dir(directory: Path) -> PolicySet:
    """Load and validate every file; raise `PolicyLoadError` listing every problem found."""
    problems: list[Problem] = []
    if not directory.is_dir():
        raise PolicyLoadError([Problem(str(directory), None, "-", "not a directory")])
    groups_src = _read(directory, directory / "groups.yaml", problems)
    catalog_src = _read(directory, directory / "catalog.yaml", problems)
    tenant_srcs = [
        _read(directory, p, problems) for p in sorted((directory / "tenants").glob("*.y*ml"))
    ]
    sources = [s for s in (groups_src, catalog_src, *tenant_srcs) if s is not None]
    groups_file = _parse(groups_src, GroupsFile, problems)
    catalog = _parse(catalog_src, Catalog, problems)
    tenants: dict[str, Tenant] = {}
    tenant_sources: dict[str, _Source] = {}
    for src in tenant_srcs:
        tenant = _parse(src, Tenant, problems)
        if tenant is None or src is None:
            continue
        if tenant.tenant in tenants:
            problems.append(_at(src, ("tenant",), f"tenant {tenant.tenant!r} is defined twice"))
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


def load_file(root: Path, path: Path, model: type[M]) -> M:
    """One YAML file validated as `model`; raises `PolicyLoadError` with file, line and field."""
    problems: list[Problem] = []
    parsed = _parse(_read(root, path, problems), model, problems)
    if parsed is None:
        raise PolicyLoadError(problems)
    return parsed


def locate(root: Path, label: str, loc: Sequence[str], message: str, severity: str) -> Problem:
    """A problem about an already loaded file, with the line of `loc` looked up again."""
    src = _read(root, root / label, [])
    if src is None:
        return Problem(label, None, ".".join(loc) or "-", message, severity)
    return _at(src, loc, message, severity)


def _read(root: Path, path: Path, problems: list[Problem]) -> _Source | None:
    label = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(label, None, "-", "file is missing"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(label, None, "-", f"cannot read: {exc}"))
        return None
    try:
        data = yaml.load(text, Loader=FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problems.append(Problem(label, line, "-", f"invalid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    return _Source(path, label, text, data)


def _parse(src: _Source | None, model: type[M], problems: list[Problem]) -> M | None:
    if src is None:
        return None
    data = src.data
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            problems.append(_at(src, loc, _message(err)))
        return None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check its spelling)"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "string_type" and isinstance(err.get("input"), bool):
        return 'YAML read this as true/false; quote it (for Norway write "NO")'
    return msg


def _at(src: _Source, loc: Sequence[str], message: str, severity: str = "error") -> Problem:
    return Problem(src.label, _line_of(src.node, loc), ".".join(loc) or "-", message, severity)


def _line_of(node: yaml.Node | None, loc: Sequence[str]) -> int | None:
    """The line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == part:
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _not_iso(code: str) -> str:
    return f"{code!r} is not ISO 3166-1{did_you_mean(code)}"


def _flatten_groups(
    groups: dict[str, CountryGroup], src: _Source, problems: list[Problem]
) -> dict[str, frozenset[str]]:
    for name, group in groups.items():
        if not GROUP_PATTERN.match(name) or name in ISO_3166_ALPHA2:
            problems.append(
                _at(
                    src,
                    ("groups", name),
                    "group names are 2-32 upper-case letters, digits or _"
                    " and must not be a country code",
                )
            )
        for i, code in enumerate(group.countries):
            if code not in ISO_3166_ALPHA2:
                problems.append(_at(src, ("groups", name, "countries", str(i)), _not_iso(code)))
        for i, inc in enumerate(group.include):
            if inc not in groups:
                problems.append(
                    _at(src, ("groups", name, "include", str(i)), f"unknown group {inc!r}")
                )
    flat: dict[str, frozenset[str]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> frozenset[str]:
        if name in flat:
            return flat[name]
        if name in stack:
            problems.append(_at(src, ("groups", name), f"groups include each other: {stack}"))
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
    backend: Backend, src: _Source, base: tuple[str, ...], problems: list[Problem]
) -> None:
    if not backend.provider:
        problems.append(_at(src, (*base, "provider"), "a litellm backend needs `provider`"))
        return
    for needed in PROVIDER_NEEDS.get(backend.provider, ()):
        if getattr(backend, needed) is None:
            problems.append(
                _at(src, (*base, needed), f"a {backend.provider} backend needs `{needed}`")
            )


def _check_catalog(catalog: Catalog, src: _Source, problems: list[Problem]) -> None:
    for name, backend in catalog.backends.items():
        base = ("backends", name)
        if backend.country not in ISO_3166_ALPHA2:
            problems.append(_at(src, (*base, "country"), _not_iso(backend.country)))
        chain = [("operator", "jurisdiction")] + [
            ("operator", "parents", str(i), "jurisdiction")
            for i in range(len(backend.operator.parents))
        ]
        for loc, code in zip(chain, backend.operator.control_chain(), strict=True):
            if code not in ISO_3166_ALPHA2:
                problems.append(_at(src, (*base, *loc), _not_iso(code)))
        if backend.kind == "litellm":
            _check_provider(backend, src, base, problems)
    for name, model in catalog.models.items():
        origin = model.developer_country
        if origin is not None and origin not in ISO_3166_ALPHA2:
            problems.append(_at(src, ("models", name, "developer_country"), _not_iso(origin)))
    seen: set[str] = set()
    for i, dep in enumerate(catalog.deployments):
        base = ("deployments", str(i))
        if dep.model not in catalog.models:
            problems.append(_at(src, (*base, "model"), f"unknown model {dep.model!r}"))
        if dep.backend not in catalog.backends:
            problems.append(_at(src, (*base, "backend"), f"unknown backend {dep.backend!r}"))
        if dep.id in seen:
            problems.append(_at(src, base, f"deployment {dep.id} is listed twice"))
        seen.add(dep.id)


def _check_tenant(
    tenant: Tenant, src: _Source, groups: dict[str, frozenset[str]], problems: list[Problem]
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
                            _at(
                                src,
                                (*base, rule_name, kind, str(i)),
                                f"{place!r} is neither an ISO 3166-1 code nor a known group"
                                + did_you_mean(place),
                            )
                        )

    check_rules(tenant.rules, ("rules",))
    for name, data_class in tenant.data_classes.items():
        check_rules(data_class.rules, ("data_classes", name, "rules"))


def _revision(root: Path, sources: Iterable[_Source]) -> str:
    digest = hashlib.sha256()
    for src in sorted(sources, key=lambda s: s.label):
        digest.update(src.label.encode() + b"\0" + src.text.encode() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]
