"""The record builder: its time text and the deployment facts it keeps between requests."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.record import RecordBuilder, rfc3339
from gateway.auth.keys import Principal
from gateway.exchange import Attempt, Exchange
from gateway.policy.apis import Api
from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision
from gateway.policy.load import load_policy_dir
from gateway.policy.schema import AuditContent
from tests.harness import EXAMPLE_POLICIES

DAY = dt.date(2026, 11, 23)
MICROS = st.integers(min_value=0, max_value=4_102_444_800 * 1_000_000)  # up to 2100


def _iso(micros: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@given(MICROS)
def test_rfc3339_is_utc_with_microseconds(micros: int) -> None:
    assert rfc3339(micros / 1_000_000) == _iso(micros)


@given(st.lists(MICROS, min_size=1, max_size=20))
def test_the_builders_time_text_is_rfc3339_whatever_the_order_of_seconds(
    moments: list[int],
) -> None:
    builder = RecordBuilder()
    for micros in moments:  # the builder keeps the last whole second it rendered
        assert builder.time(micros / 1_000_000) == _iso(micros)


def _policy(root: Path, country: str) -> CompiledPolicy:
    shutil.copytree(EXAMPLE_POLICIES, root)
    catalog = root / "catalog.yaml"
    data = yaml.safe_load(catalog.read_text())
    data["backends"]["vllm-paris"]["country"] = country
    catalog.write_text(yaml.safe_dump(data))
    return CompiledPolicy(load_policy_dir(root), DAY)


def _exchange(policy: CompiledPolicy) -> Exchange:
    route = policy.route("eu-bank", "mistral-small", None)
    dep = next(d for d in route.eligible if d.backend == "vllm-paris")
    exchange = Exchange("r1", "d1", Principal("eu-bank", "key1"), Api.CHAT, model="mistral-small")
    exchange.decision, exchange.deployment, exchange.status = Decision(route), dep, 200
    exchange.attempts.append(Attempt(dep.id, "ok", 0.001))
    return exchange


def test_records_carry_the_deployment_facts_of_their_own_policy_revision(tmp_path: Path) -> None:
    """A reload that moves a backend must show in the records made under the new revision,
    while requests still running under the old one keep the old facts."""
    paris = _policy(tmp_path / "paris", "FR")
    moved = _policy(tmp_path / "moved", "BE")
    assert paris.revision != moved.revision
    builder = RecordBuilder()
    for policy, country in ((paris, "FR"), (moved, "BE"), (paris, "FR"), (moved, "BE")):
        record = builder.build(_exchange(policy), 0.0, None, AuditContent.NONE)
        assert record["policy_revision"] == policy.revision
        assert record["deployment"]["inference_country"] == country
        assert record["deployment"]["id"] == "mistral-small@vllm-paris"
