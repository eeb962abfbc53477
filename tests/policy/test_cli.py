"""`sovereign-gateway policy check | explain | test | diff | schema`, run as an admin runs them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.schemas import SCHEMAS, render
from tests.harness import EXAMPLE_POLICIES, sovereign_gateway

SCHEMA_DIR = EXAMPLE_POLICIES / "schema"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return sovereign_gateway("policy", *args, timeout=60)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def test_check_passes_the_examples_with_their_warnings(policies: Path) -> None:
    done = run("check", policies, "--at", "2026-11-23")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 4 tenants, 21 deployments")
    assert (
        "tenants/fr-public-body.yaml:6: warning: models.4: gpt-4o is allowed but no deployment"
        in done.stderr
    )
    assert "catalog.yaml:60: warning: backends.ovhcloud-gra.attestations.0.expires: " in done.stderr
    assert "expires on 2026-12-10, in 17 days" in done.stderr
    assert run("check", policies, "--at", "2026-11-23", "--strict").returncode == 1


def test_check_names_file_line_and_field_and_fails(policies: Path) -> None:
    path = policies / "catalog.yaml"
    path.write_text(path.read_text().replace("country: SE", "country: SWE"))
    done = run("check", policies)
    assert done.returncode == 1
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "country: SWE" in t)
    assert (
        f"catalog.yaml:{line}: error: backends.azure-sweden.country: 'SWE' is not ISO 3166-1"
        in (done.stderr)
    )


def test_check_warns_on_unknown_names(policies: Path) -> None:
    path = policies / "tenants" / "eu-bank.yaml"
    text = path.read_text().replace("[mistral-small, llama-3.1-8b]", "[mistral-smal, llama-3.1-8b]")
    path.write_text(text.replace("bge-m3, multilingual", "bgem3, multilingual"))
    keys = policies / "keys.yaml"
    keys.write_text(keys.read_text().replace("tenant: acme-dev", "tenant: acme-devv"))
    done = run("check", policies)
    assert done.returncode == 0
    assert "aliases.chat-default.0: unknown model 'mistral-smal'" in done.stderr
    assert "'bgem3' matches no model in the catalog" in done.stderr
    assert "keys.yaml:" in done.stderr and "tenant 'acme-devv', which has no policy" in done.stderr


def test_explain_text_and_json(policies: Path) -> None:
    done = run(
        "explain", policies, "--tenant", "fr-public-body", "--model", "gpt-4o", "--at", "2026-11-23"
    )
    assert done.returncode == 1  # refused
    assert "decision: REFUSED" in done.stdout
    assert "gpt-4o@azure-sweden  [refused]" in done.stdout
    assert "FAIL  inference_country: inference runs in SE: SE is not in [FR]" in done.stdout
    done = run(
        "explain",
        policies,
        "--tenant",
        "eu-bank",
        "--model",
        "chat-default",
        "--data-class",
        "secret",
        "--json",
        "--at",
        "2026-11-23",
    )
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert doc["eligible"] == ["mistral-small@vllm-paris", "mistral-small@vllm-frankfurt"]
    bedrock = next(
        c for c in doc["candidates"] if c["deployment"] == "llama-3.1-8b@bedrock-frankfurt"
    )
    assert bedrock["facts"]["operator_control_chain"] == ["LU", "US"]
    assert {k: v for k, v in bedrock["rules"][2].items() if k != "reason"} == {
        "rule": "operator_control",
        "passed": False,
    }
    done = run(
        "explain",
        policies,
        "--tenant",
        "eu-bank",
        "--model",
        "mistral-small",
        "--data-class",
        "Secret",
    )
    assert done.returncode == 1
    assert "unknown data classification 'Secret'" in done.stderr


def test_test_runs_the_case_files_and_reports_failures(policies: Path) -> None:
    done = run("test", policies)
    assert done.returncode == 0, done.stdout
    assert "25 passed, 0 failed" in done.stdout
    cases = policies / "tests" / "tenants.yaml"
    cases.write_text(
        cases.read_text().replace(
            "expect: {allowed: false, refused_by: [operator_control]}", "expect: {allowed: true}", 1
        )
    )
    done = run("test", policies)
    assert done.returncode == 1
    assert (
        "FAIL  tests/tenants.yaml: Azure in Sweden is in the EEA but US-controlled, so gpt-4o is refused"
        in done.stdout
    )
    assert "expected allowed, got refused" in done.stdout


def test_test_reports_a_bad_case_file_with_line(policies: Path) -> None:
    cases = policies / "tests" / "tenants.yaml"
    cases.write_text(
        cases.read_text().replace(
            "expect: {allowed: true, countries: [FR]", "expect: {alowed: true, countries: [FR]"
        )
    )
    done = run("test", policies)
    assert done.returncode == 1
    assert "tests/tenants.yaml:10: error: cases.0.expect.alowed: unknown field" in done.stderr


def test_diff_shows_who_gains_and_loses_what(policies: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(policies, new)
    bank = new / "tenants" / "eu-bank.yaml"
    bank.write_text(
        bank.read_text().replace(
            "operator_control: {deny: [US, CN]}", "operator_control: {deny: [CN]}"
        )
    )
    assert run("diff", policies, policies).returncode == 0
    done = run("diff", policies, new, "--at", "2026-11-23")
    assert done.returncode == 1
    assert "eu-bank / chat-default: +llama-3.1-8b@bedrock-frankfurt" in done.stdout
    assert "gpt-4o" not in done.stdout  # Azure still lacks zero retention
    assert "eu-bank / llama-3.1-8b: +llama-3.1-8b@bedrock-frankfurt" in done.stdout
    assert "fr-public-body" not in done.stdout
    doc = json.loads(run("diff", policies, new, "--json", "--at", "2026-11-23").stdout)
    gained = {(c["tenant"], c["model"], c["data_class"]): c["gained"] for c in doc["changes"]}
    assert gained[("eu-bank", "claude-sonnet", None)] == ["claude-sonnet@bedrock-frankfurt"]
    assert ("eu-bank", "claude-sonnet", "confidential") not in gained  # still self-hosted only


def test_committed_schemas_match_the_models() -> None:
    for name, model in SCHEMAS.items():
        assert (SCHEMA_DIR / name).read_text() == render(model), f"regenerate {name}"
    assert run("schema", "--out", SCHEMA_DIR, "--check").returncode == 0


def test_schema_check_notices_a_stale_file(tmp_path: Path) -> None:
    assert run("schema", "--out", tmp_path).returncode == 0
    (tmp_path / "tenant.schema.json").write_text("{}")
    done = run("schema", "--out", tmp_path, "--check")
    assert done.returncode == 1 and "tenant.schema.json: stale" in done.stderr


def _schema_for(path: Path) -> Path:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), path
    return (path.parent / first.split("=", 1)[1]).resolve()


@pytest.mark.parametrize(
    "path",
    sorted(EXAMPLE_POLICIES.glob("*.yaml")) + sorted(EXAMPLE_POLICIES.glob("*/*.yaml")),
    ids=lambda p: str(p.relative_to(EXAMPLE_POLICIES)),
)
def test_every_example_names_its_schema_and_validates(path: Path) -> None:
    schema = json.loads(_schema_for(path).read_text())
    jsonschema.validate(_as_editor_sees_it(yaml.safe_load(path.read_text())), schema)


def _as_editor_sees_it(value: Any) -> Any:
    """YAML dates are strings to a JSON Schema validator (and to the editor's language server)."""
    if isinstance(value, dict):
        return {k: _as_editor_sees_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_editor_sees_it(v) for v in value]
    return value.isoformat() if isinstance(value, dt.date) else value


def test_the_schema_catches_a_misspelt_field() -> None:
    schema = json.loads((SCHEMA_DIR / "tenant.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="operator_contrl"):
        jsonschema.validate(
            {"tenant": "x", "models": ["*"], "rules": {"operator_contrl": {}}}, schema
        )
