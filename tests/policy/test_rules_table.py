"""Table-driven rule cases in YAML: every rule kind with allowed, denied and bypass cases.

`tests/policy/rules/` is a policy built so that each rule has deployments that pass and fail it;
its `tests/rules.yaml` holds the cases. The example policies' own case files run here too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.policy.cases import Case, CaseFile, Expect, load_cases, run_cases
from gateway.policy.load import load_policy_dir
from tests.harness import EXAMPLE_POLICIES

RULES = Path(__file__).parent / "rules"
TODAY = dt.date(2026, 11, 23)


def _cases(directory: Path) -> list[tuple[str, CaseFile, Case]]:
    return [(label, f, c) for label, f in load_cases(directory) for c in f.cases]


@pytest.mark.parametrize(
    ("directory", "label", "case_file", "case"),
    [(RULES, *x) for x in _cases(RULES)]
    + [(EXAMPLE_POLICIES, *x) for x in _cases(EXAMPLE_POLICIES)],
    ids=lambda v: v.name if isinstance(v, Case) else None,
)
def test_case(directory: Path, label: str, case_file: CaseFile, case: Case) -> None:
    policy = load_policy_dir(directory)
    single = CaseFile(at=case_file.at, cases=[case])
    [result] = run_cases(policy, [(label, single)], TODAY)
    assert result.failures == ()


@pytest.mark.parametrize(
    "wrong",
    [
        Expect(allowed=False),
        Expect(deployments=["eu-open@de-prov", "eu-open@fr-self"]),
        Expect(first="eu-open@de-prov"),
        Expect(countries=["DE"]),
        Expect(includes=["eu-open@us-us"]),
        Expect(excludes=["eu-open@fr-self"]),
        Expect(refused_by=["inference_country"]),
        Expect(error="unknown_data_class"),
    ],
)
def test_a_wrong_expectation_fails(wrong: Expect) -> None:
    """The runner is not a rubber stamp: each kind of expectation can fail."""
    policy = load_policy_dir(RULES)
    case = Case(name="wrong", tenant="t-country-allow", model="eu-open", expect=wrong)
    [result] = run_cases(policy, [("x", CaseFile(cases=[case]))], TODAY)
    assert not result.passed
    assert result.failures[0]
