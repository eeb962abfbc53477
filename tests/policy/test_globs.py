"""What a model pattern in a tenant's allow-list admits, exactly as the README says, and the
warning for a pattern that would let a look-alike model from another developer in."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy.compile import CompiledPolicy
from gateway.policy.load import load_policy_dir
from tests.harness import EXAMPLE_POLICIES, sovereign_gateway

TODAY = dt.date(2026, 11, 23)
EUROLLM = "EuroLLM consortium (Unbabel, Instituto Superior Técnico, et al.)"
# look-alikes of eurollm-9b, each deployed on the self-hosted Paris backend
ADDED = {
    "eurollm-9b-instruct": {"developer": EUROLLM, "developer_country": "PT"},
    "eurollm-9b.evil": {"developer": "Evil Corp", "developer_country": "US"},
    "eurollm-90b": {"developer": EUROLLM, "developer_country": "PT"},
}


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def add_models(policies: Path, models: dict[str, dict[str, Any]]) -> None:
    path = policies / "catalog.yaml"
    catalog = yaml.safe_load(path.read_text())
    for name, facts in models.items():
        catalog["models"][name] = facts
        catalog["deployments"].append(
            {"model": name, "backend": "vllm-paris", "upstream_model": name}
        )
    path.write_text(yaml.safe_dump(catalog, sort_keys=False, allow_unicode=True))


# pattern -> what it admits among eurollm-9b and the look-alikes above (README, "Model patterns")
PATTERNS = {
    "eurollm-9b": {"eurollm-9b"},
    "eurollm-9b*": {"eurollm-9b", "eurollm-9b-instruct", "eurollm-9b.evil"},
    "eurollm-9b-*": {"eurollm-9b-instruct"},
    "eurollm-9b[!.]*": {"eurollm-9b-instruct"},
    "eurollm-?b": {"eurollm-9b"},
    "eurollm-9[0-9]b": {"eurollm-90b"},
    "*9b": {"eurollm-9b"},
    "EuroLLM-*": set(),
    "eurollm": set(),
}


def test_a_pattern_admits_exactly_what_the_readme_says(policies: Path) -> None:
    add_models(policies, ADDED)
    for i, pattern in enumerate(PATTERNS):
        tenant = {"tenant": f"glob{i}", "models": [pattern]}
        (policies / "tenants" / f"glob{i}.yaml").write_text(yaml.safe_dump(tenant))
    compiled = CompiledPolicy(load_policy_dir(policies), TODAY)
    for i, (pattern, admitted) in enumerate(PATTERNS.items()):
        reachable = {m for m in compiled.models_for(f"glob{i}") if m.startswith("eurollm")}
        assert reachable == admitted, pattern


def check(policies: Path) -> str:
    done = sovereign_gateway("policy", "check", policies, "--at", TODAY.isoformat(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def line_of(path: Path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


def test_check_warns_when_a_pattern_admits_another_developers_model(policies: Path) -> None:
    add_models(policies, {"eurollm-9b.evil": ADDED["eurollm-9b.evil"]})
    warnings = check(policies)
    tenant = policies / "tenants" / "fr-public-body.yaml"
    assert (
        f"{policies}/tenants/fr-public-body.yaml:{line_of(tenant, 'models:')}: warning: models.1:"
        f" 'eurollm-*' admits models of 2 developer(s) and 2 weights origin(s): eurollm-9b"
        f" ({EUROLLM}, PT); eurollm-9b.evil (Evil Corp, US); list the models by name, or narrow"
        " the pattern"
    ) in warnings
    assert "tenants/eu-bank.yaml:7: warning: models.1: 'eurollm-*' admits models" in warnings
    # `*` alone means every model and says so; it is not warned about
    assert "acme-dev.yaml" not in warnings and "research-lab.yaml" not in warnings


def test_check_warns_on_one_developer_with_two_origins(policies: Path) -> None:
    add_models(policies, {"mistral-large": {"developer": "Mistral AI", "developer_country": "US"}})
    assert "warning: models.0: 'mistral-*' admits models of 1 developer(s) and 2" in check(policies)


def test_check_is_quiet_when_a_pattern_stays_within_one_developer(policies: Path) -> None:
    add_models(policies, {"eurollm-9b-instruct": ADDED["eurollm-9b-instruct"]})
    assert "admits models" not in check(policies)
