"""Loading policy: every problem is reported with file, line and field, and nothing slips through."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision
from gateway.policy.engine import evaluate_deployment
from gateway.policy.load import PolicyLoadError, load_policy_dir
from gateway.policy.schema import AttestationKind, Rules
from tests.harness import EXAMPLE_POLICIES

TODAY = dt.date(2026, 11, 23)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(directory)
    return [str(p) for p in info.value.problems]


def test_examples_load(policies: Path) -> None:
    policy = load_policy_dir(policies)
    assert set(policy.tenants) == {"fr-public-body", "eu-bank", "research-lab", "acme-dev"}
    assert policy.revision.startswith("sha256:")
    assert "NO" in policy.groups["EEA"] and "FR" in policy.groups["EEA"]


def test_misspelt_field_names_file_line_and_field(policies: Path) -> None:
    path = policies / "tenants" / "eu-bank.yaml"
    path.write_text(path.read_text().replace("operator_control:", "operator_contrl:"))
    problems = _problems(policies)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "operator_contrl" in t)
    assert problems == [
        f"tenants/eu-bank.yaml:{line}: error: rules.operator_contrl: unknown field (check its spelling)"
    ]


def test_unknown_country_code_is_an_error_not_a_silent_miss(policies: Path) -> None:
    path = policies / "tenants" / "eu-bank.yaml"
    path.write_text(path.read_text().replace("deny: [US, CN]", "deny: [UK, CN]"))
    [problem] = _problems(policies)
    assert "rules.operator_control.deny.0" in problem
    assert "'UK' is neither an ISO 3166-1 code nor a known group" in problem


def test_case_and_whitespace_variants_are_the_same_place(policies: Path) -> None:
    path = policies / "tenants" / "eu-bank.yaml"
    path.write_text(path.read_text().replace("deny: [US, CN]", 'deny: [" us ", cn]'))
    compiled = CompiledPolicy(load_policy_dir(policies), TODAY)
    route = compiled.route("eu-bank", "gpt-4o", None)
    assert route.eligible == ()
    failed = {c.deployment.id: [r.rule for r in c.failures()] for c in Decision(route).candidates}
    assert "operator_control" in failed["gpt-4o@azure-sweden"]


def test_bare_no_in_yaml_gets_a_hint(policies: Path) -> None:
    path = policies / "groups.yaml"
    path.write_text(path.read_text().replace('"NO"', "NO"))
    [problem] = _problems(policies)
    assert problem.startswith("groups.yaml:")
    assert "quote it" in problem


def test_invalid_yaml_reports_the_line(policies: Path) -> None:
    (policies / "tenants" / "broken.yaml").write_text("tenant: broken\nmodels: [a, b\n")
    [problem] = _problems(policies)
    assert problem.startswith("tenants/broken.yaml:3: error:")


def test_expired_attestation_counts_as_absent(policies: Path) -> None:
    policy = load_policy_dir(policies)
    # ovhcloud-gra's SecNumCloud attestation expires 2026-12-10 in the example catalog
    rules = Rules(attestations=[AttestationKind.SECNUMCLOUD])
    dep = next(d for d in policy.catalog.deployments if d.backend == "ovhcloud-gra")
    assert evaluate_deployment(rules, dep, policy, dt.date(2026, 12, 9)).eligible
    result = evaluate_deployment(rules, dep, policy, dt.date(2026, 12, 10))
    assert not result.eligible
    assert "expired 2026-12-10" in result.results[0].reason
    # compiled tables know when they go stale
    assert CompiledPolicy(policy, dt.date(2026, 12, 9)).valid_until == dt.date(2026, 12, 10)


def test_provider_backends_name_what_they_need(policies: Path) -> None:
    path = policies / "catalog.yaml"
    text = path.read_text()
    block = "  bedrock-frankfurt:                 # AWS Bedrock, eu-central-1\n    kind: openai_compatible\n"
    assert block in text
    path.write_text(
        text.replace(
            block,
            "  bedrock-frankfurt:\n    kind: litellm\n    provider: bedrock\n"
            "    credentials_env: {aws_secret: AWS_SECRET_ACCESS_KEY}\n",
        )
    )
    lines = path.read_text().splitlines()
    first = next(i for i, t in enumerate(lines, 1) if "credentials_env" in t)
    problems = _problems(policies)
    assert problems == [
        f"catalog.yaml:{first}: error: backends.bedrock-frankfurt.credentials_env.aws_secret.[key]: "
        "Input should be 'aws_access_key_id', 'aws_secret_access_key', 'aws_session_token' or "
        "'vertex_credentials'"
    ]
    path.write_text(path.read_text().replace("{aws_secret: ", "{aws_secret_access_key: "))
    [problem] = _problems(policies)
    backend = next(i for i, t in enumerate(lines, 1) if t.startswith("  bedrock-frankfurt:"))
    assert problem == (  # a missing field is reported at the backend that lacks it
        f"catalog.yaml:{backend}: error: backends.bedrock-frankfurt.region: "
        "a bedrock backend needs `region`"
    )


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "message"),
    [
        (
            "tenants/eu-bank.yaml",
            "deny: [US, CN]",
            "deny: [US, UK]",
            "rules.operator_control.deny.1",
            "'UK' is neither an ISO 3166-1 code nor a known group; did you mean 'GB'?"
            " (UK is reserved in ISO 3166-1; the United Kingdom is GB)",
        ),
        (
            "groups.yaml",
            "FI, FR, DE, GR, HU",
            "FI, FR, DE, EL, HU",
            "groups.EU.countries.11",
            "'EL' is not ISO 3166-1; did you mean 'GR'?"
            " (EL is the EU's abbreviation for Greece; ISO 3166-1 uses GR)",
        ),
        (
            "catalog.yaml",
            "    country: SE\n",
            "    country: SWE\n",
            "backends.azure-sweden.country",
            "'SWE' is not ISO 3166-1; did you mean 'SE'? (SWE is alpha-3; policies use alpha-2 codes)",
        ),
        (
            "catalog.yaml",
            "parents: [{name: United Internet AG, jurisdiction: DE}]",
            "parents: [{name: United Internet AG, jurisdiction: DEU}]",
            "backends.ionos-berlin.operator.parents.0.jurisdiction",
            "'DEU' is not ISO 3166-1; did you mean 'DE'? (DEU is alpha-3; policies use alpha-2 codes)",
        ),
        (
            "tenants/fr-public-body.yaml",
            "inference_country: {allow: [FR]}",
            "inference_country: {allow: [fra]}",
            "rules.inference_country.allow.0",
            "'FRA' is neither an ISO 3166-1 code nor a known group; did you mean 'FR'?"
            " (FRA is alpha-3; policies use alpha-2 codes)",
        ),
    ],
)
def test_a_country_error_says_what_was_probably_meant(
    policies: Path, file: str, old: str, new: str, field: str, message: str
) -> None:
    path = policies / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    changed = new.strip().splitlines()[0]
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if changed in t)
    assert _problems(policies) == [f"{file}:{line}: error: {field}: {message}"]


def test_a_code_that_is_nothing_gets_no_guess(policies: Path) -> None:
    path = policies / "tenants" / "eu-bank.yaml"
    path.write_text(path.read_text().replace("deny: [US, CN]", "deny: [US, XX]"))
    [problem] = _problems(policies)
    assert problem.endswith("'XX' is neither an ISO 3166-1 code nor a known group")
