"""Policy test cases as an admin writes them: the README's example runs as printed, and a case that
names something that does not exist is an error with file and line, not a case that fails or
passes by accident."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import EXAMPLE_POLICIES, sovereign_gateway

README = EXAMPLE_POLICIES.parent / "README.md"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def policy_test(policies: Path) -> subprocess.CompletedProcess[str]:
    return sovereign_gateway("policy", "test", policies, "-v", timeout=60)


def readme_case_file() -> str:
    """The YAML block that follows the README's description of a case file."""
    text = README.read_text()
    section = text[text.index("A case file (`policies/tests/*.yaml`)") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_readme_example_is_a_case_file_that_passes(policies: Path) -> None:
    for old in (policies / "tests").iterdir():
        old.unlink()
    (policies / "tests" / "readme.yaml").write_text(readme_case_file())
    done = policy_test(policies)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed, 0 failed" in done.stdout
    assert (
        "PASS  tests/readme.yaml: Azure in Sweden is in the EEA but US-controlled, so gpt-4o is"
        " refused"
    ) in done.stdout


def write_case(policies: Path, expect: str) -> Path:
    path = policies / "tests" / "typo.yaml"
    path.write_text(
        "cases:\n"
        "  - name: no US-controlled operator\n"
        "    tenant: eu-bank\n"
        "    model: gpt-4o\n"
        "    data_class: secret\n"
        f"    expect:\n{expect}"
    )
    return path


@pytest.mark.parametrize(
    ("expect", "problem"),
    [
        (
            "      allowed: false\n      refused_by: [operator_contrl]\n",
            "tests/typo.yaml:8: error: cases.0.expect.refused_by.0: unknown rule"
            " 'operator_contrl'; did you mean 'operator_control'?; rules are model_allowlist,",
        ),
        (
            "      refused_by:\n        - inference_country\n        - data_class[secrett].self_hosted\n",
            "tests/typo.yaml:9: error: cases.0.expect.refused_by.1: unknown rule"
            " 'data_class[secrett].self_hosted'; did you mean 'data_class[secret].self_hosted'?",
        ),
        (
            "      excludes: [gpt-4o@azure-swedn]\n",
            "tests/typo.yaml:7: error: cases.0.expect.excludes.0: unknown deployment"
            " 'gpt-4o@azure-swedn'; did you mean 'gpt-4o@azure-sweden'? (a deployment is written"
            " model@backend)",
        ),
        (
            "      first: gpt4o@openai-us\n",
            "tests/typo.yaml:7: error: cases.0.expect.first: unknown deployment 'gpt4o@openai-us';"
            " did you mean 'gpt-4o@openai-us'?",
        ),
        (
            "      countries: [EEA, UK]\n",
            "tests/typo.yaml:7: error: cases.0.expect.countries.1: 'UK' is neither an ISO 3166-1"
            " code nor a known group; did you mean 'GB'?",
        ),
    ],
)
def test_a_case_naming_what_does_not_exist_is_an_error(
    policies: Path, expect: str, problem: str
) -> None:
    write_case(policies, expect)
    done = policy_test(policies)
    assert done.returncode == 1
    assert f"{policies}/{problem}" in done.stderr, done.stderr
    assert "no case was run" in done.stderr and "PASS" not in done.stdout
