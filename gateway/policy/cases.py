"""Policy test cases: YAML files kept beside the policies, run by `policy test DIR`.

Each case names a tenant, a model (or alias), optionally a data class and a date, and what must
happen: allowed (where to, first choice, which deployments are in or out), refused (by which
rule), or an error (an unknown data class must never be ignored). Bypass attempts are ordinary
cases: a model name in another case, a data class in capitals, a country code in lower case.
Cases go through `CompiledPolicy.route`, the same lookup the gateway does per request.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from gateway.errors import GatewayError
from gateway.policy.compile import DATA_CLASS_PREFIX, CompiledPolicy, Route
from gateway.policy.decision import Decision
from gateway.policy.iso3166 import ISO_3166_ALPHA2, did_you_mean
from gateway.policy.load import PolicyLoadError
from gateway.policy.model import PolicySet
from gateway.policy.schema import AttestationKind, Place, Strict
from gateway.problems import Problem
from gateway.yamlfile import load_file, locate

CASES_DIR = "tests"

# the rules a decision reports, by name (what `refused_by` names): the allow-list, then each rule
# of the tenant; a data class's own rules carry its name as a prefix, as DATA_CLASS_PREFIX says
RULES_OF_A_RULE_SET = (
    "inference_country",
    "operator_control",
    "weights_origin",
    "open_weights",
    "self_hosted",
    *(f"attestation:{kind.value}" for kind in AttestationKind),
)


def rule_names(data_classes: Iterable[str]) -> list[str]:
    """Every rule name a decision for a tenant with these data classes can report."""
    prefixed = [DATA_CLASS_PREFIX.format(c) + r for c in data_classes for r in RULES_OF_A_RULE_SET]
    return ["model_allowlist", *RULES_OF_A_RULE_SET, *prefixed]


class Expect(Strict):
    allowed: bool | None = Field(default=None, description="true: some deployment is eligible")
    countries: list[Place] | None = Field(
        default=None, description="every eligible deployment runs in one of these (groups allowed)"
    )
    first: str | None = Field(default=None, description="the deployment tried first")
    deployments: list[str] | None = Field(default=None, description="exactly these, in order")
    includes: list[str] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    refused_by: list[str] = Field(
        default_factory=list,
        description="rules that fail for every candidate, e.g. inference_country",
    )
    error: str | None = Field(
        default=None, description="an error code: unknown_data_class, model_not_found, ..."
    )


class Case(Strict):
    name: str = Field(min_length=1)
    tenant: str
    model: str
    data_class: str | None = None
    at: dt.date | None = None
    expect: Expect


class CaseFile(Strict):
    at: dt.date | None = Field(default=None, description="default date for every case")
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    file: str
    case: Case
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def case_files(directory: Path) -> list[Path]:
    return sorted((directory / CASES_DIR).glob("*.y*ml"))


def load_cases(directory: Path) -> list[tuple[str, CaseFile]]:
    """Every case file under DIR/tests; raises `PolicyLoadError` naming file, line and field."""
    return [
        (str(p.relative_to(directory)), load_file(directory, p, CaseFile, PolicyLoadError))
        for p in case_files(directory)
    ]


def check_cases(
    directory: Path, policy: PolicySet, files: list[tuple[str, CaseFile]]
) -> list[Problem]:
    """Names in the cases that refer to nothing (a deployment, a rule, a country or group): such
    a case would fail, or pass, for the wrong reason."""
    deployments = [d.id for d in policy.catalog.deployments]
    problems: list[Problem] = []
    for label, case_file in files:
        for i, case in enumerate(case_file.cases):
            base = ("cases", str(i), "expect")
            tenant = policy.tenants.get(case.tenant)
            rules = rule_names(tenant.data_classes if tenant is not None else ())
            for loc, name in _named(case.expect, "refused_by"):
                if name not in rules:
                    message = (
                        f"unknown rule {name!r}{_guess(name, rules)}; rules are model_allowlist,"
                        " inference_country, operator_control, weights_origin, open_weights,"
                        " self_hosted, attestation:KIND and data_class[CLASS].RULE"
                    )
                    problems.append(locate(directory, label, (*base, *loc), message, "error"))
            for field in ("first", "deployments", "includes", "excludes"):
                for loc, name in _named(case.expect, field):
                    if name not in deployments:
                        message = (
                            f"unknown deployment {name!r}{_guess(name, deployments)}"
                            " (a deployment is written model@backend)"
                        )
                        problems.append(locate(directory, label, (*base, *loc), message, "error"))
            for loc, place in _named(case.expect, "countries"):
                if place not in ISO_3166_ALPHA2 and place not in policy.groups:
                    message = (
                        f"{place!r} is neither an ISO 3166-1 code nor a known group"
                        + did_you_mean(place)
                    )
                    problems.append(locate(directory, label, (*base, *loc), message, "error"))
    return problems


def _named(expect: Expect, field: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """(location, name) of each name an `expect` field holds (one name, or a list)."""
    value = getattr(expect, field)
    if isinstance(value, str):
        yield (field,), value
    elif value is not None:
        for i, name in enumerate(value):
            yield (field, str(i)), name


def _guess(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def run_cases(
    policy: PolicySet, files: list[tuple[str, CaseFile]], today: dt.date
) -> Iterator[CaseResult]:
    compiled: dict[dt.date, CompiledPolicy] = {}
    for label, case_file in files:
        for case in case_file.cases:
            when = case.at or case_file.at or today
            if when not in compiled:
                compiled[when] = CompiledPolicy(policy, when)
            yield CaseResult(label, case, tuple(_check(compiled[when], case)))


def _check(compiled: CompiledPolicy, case: Case) -> Iterator[str]:
    expect = case.expect
    if not compiled.has_tenant(case.tenant):
        if expect.error != "unknown_tenant":
            yield f"tenant {case.tenant!r} is not in the policy"
        return
    try:
        route = compiled.route(case.tenant, case.model, case.data_class)
    except GatewayError as exc:
        if expect.error is None:
            yield f"expected a decision, got error {exc.code}: {exc.message}"
        elif exc.code != expect.error:
            yield f"expected error {expect.error}, got {exc.code}: {exc.message}"
        return
    if expect.error is not None:
        yield f"expected error {expect.error}, got a decision ({_summary(route)})"
        return
    eligible = [d.id for d in route.eligible]
    if expect.allowed is not None and bool(eligible) != expect.allowed:
        yield f"expected {'allowed' if expect.allowed else 'refused'}, got {_summary(route)}"
    if expect.countries is not None:
        allowed = compiled.policy.expand(expect.countries)
        backends = compiled.policy.catalog.backends
        outside = [d.id for d in route.eligible if backends[d.backend].country not in allowed]
        if outside:
            yield f"eligible outside {expect.countries}: {', '.join(outside)}"
    if expect.first is not None and (eligible[:1] != [expect.first]):
        yield f"expected {expect.first} first, got {eligible[0] if eligible else 'nothing'}"
    if expect.deployments is not None and eligible != expect.deployments:
        yield f"expected exactly {expect.deployments}, got {eligible}"
    missing = [d for d in expect.includes if d not in eligible]
    if missing:
        yield f"expected eligible: {', '.join(missing)}"
    present = [d for d in expect.excludes if d in eligible]
    if present:
        yield f"expected not eligible: {', '.join(present)}"
    candidates = Decision(route).candidates if expect.refused_by else ()
    for rule in expect.refused_by:
        passing = [
            c.deployment.id
            for c in candidates
            if not any(r.rule == rule and not r.passed for r in c.results)
        ]
        if passing or not candidates:
            yield f"rule {rule} does not refuse {', '.join(passing) or 'anything (no candidate)'}"


def _summary(route: Route) -> str:
    if route.eligible:
        return "allowed: " + ", ".join(d.id for d in route.eligible)
    return "refused"
