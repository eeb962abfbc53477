"""One decision, several renderings: the 403 a client gets, the audit record, the explain document
and the metrics labels all say the same, from one run of the engine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.errors import ModelNotFound, PolicyViolation
from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision, verdict
from gateway.policy.load import load_policy_dir
from tests.harness import EXAMPLE_POLICIES

TODAY = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def compiled() -> CompiledPolicy:
    return CompiledPolicy(load_policy_dir(EXAMPLE_POLICIES), TODAY)


def _counting(compiled: CompiledPolicy, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []
    explain = compiled.explain

    def counted(tenant: str, requested: str, data_class: str | None) -> Any:
        runs.append(requested)
        return explain(tenant, requested, data_class)

    monkeypatch.setattr(compiled, "explain", counted)
    return runs


def test_a_refusal_renders_the_same_failed_rules_everywhere_from_one_engine_run(
    compiled: CompiledPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _counting(compiled, monkeypatch)
    decision = Decision(compiled.route("fr-public-body", "gpt-4o", None))
    assert not decision.allowed

    error = decision.error("dec-1")
    record = decision.record_refusal()
    doc = decision.explain()
    result, rule = verdict(decision, error)

    assert isinstance(error, PolicyViolation) and error.status == 403
    assert error.details is not None
    told = {c["deployment"]: [f["rule"] for f in c["failed"]] for c in error.details["candidates"]}
    assert record is not None
    recorded = {c["deployment"]: c["failed_rules"] for c in record["candidates"]}
    explained = {
        c["deployment"]: [r["rule"] for r in c["rules"] if not r["passed"]]
        for c in doc["candidates"]
    }
    assert told == recorded == explained
    assert told and all(told.values())
    assert {"operator_control", "self_hosted"} <= {r for rules in told.values() for r in rules}
    assert (result, doc["decision"]) == ("refused", "refused")
    assert rule == next(iter(told.values()))[0]
    assert runs == ["gpt-4o"]  # the engine ran once for all four renderings


def test_an_allowed_request_never_runs_the_engine(
    compiled: CompiledPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _counting(compiled, monkeypatch)
    decision = Decision(compiled.route("eu-bank", "mistral-small", None))
    assert decision.allowed
    assert decision.record_refusal() is None
    assert verdict(decision, None) == ("allowed", "")
    assert runs == []


def test_a_request_that_outlived_its_policy_is_refused_as_policy_changed(
    compiled: CompiledPolicy,
) -> None:
    decision = Decision(compiled.route("eu-bank", "mistral-small", None)).after_reload("sha256:new")
    error = decision.error("dec-2")
    assert isinstance(error, PolicyViolation) and error.code == "policy_changed"
    assert "sha256:new" in error.message
    assert verdict(decision, error) == ("refused", "policy_changed")


def test_a_model_outside_the_allow_list_is_answered_as_unknown(compiled: CompiledPolicy) -> None:
    allowed = set(compiled.public_names("fr-public-body"))
    outside = next(m for m in sorted(compiled.policy.catalog.models) if m not in allowed)
    decision = Decision(compiled.route("fr-public-body", outside, None))
    error = decision.error("dec-3")
    assert isinstance(error, ModelNotFound) and error.status == 404
    assert "fr-public-body" not in error.message  # nothing about the policy is disclosed
    assert verdict(decision, error) == ("refused", "model_allowlist")


def test_no_decision_is_an_error_with_the_errors_code() -> None:
    error = PolicyViolation("no policy", code="unknown_tenant")
    assert verdict(None, error) == ("error", "unknown_tenant")
