"""Reliability, backend half: one of two backends of a model answers 500, closes every
connection, hangs, or breaks every stream after three chunks, under bounded load (8 clients),
then heals. Each scenario prints its figures and asserts the promise, not a timing:

- every request that could be moved to the healthy backend is answered (a stream that broke
  after its first byte cannot be, but most streams are whole);
- the broken deployment is taken out;
- once healed, it serves again, within the scenario's bound.

Run with `make reliability` (`pytest -m reliability`); the figures are in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, Sim, run_gateway, run_simulators
from tests.reliability.load import HEADER, Figures, Target, run

pytestmark = pytest.mark.reliability

PARIS = "mistral-small@vllm-paris"
World = tuple[PolicyDir, Gateway, list[Figures]]
SETTINGS: dict[str, Any] = {
    "health_probe_interval_s": 0.5,
    "vllm_metrics_interval_s": 0,
    "outlier_consecutive_failures": 3,
    "outlier_base_ejection_s": 2.0,
    "stream_first_byte_timeout_s": 1.0,
    "first_byte_timeout_s": 60.0,
    "request_deadline_s": 30.0,
    "log_level": "warning",
    "access_log": False,
    "audit_checkpoint_interval_s": 0.5,
}


@pytest.fixture(scope="module")
def table() -> Iterator[list[Figures]]:
    """The figures of every scenario, printed as one table at the end."""
    rows: list[Figures] = []
    yield rows
    print("\n" + HEADER)
    for figures in rows:
        print(figures.row())


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, table: list[Figures]
) -> Iterator[tuple[PolicyDir, Gateway, list[Figures]]]:
    root = tmp_path_factory.mktemp("reliability-backends")
    policies = PolicyDir.from_examples(root / "policies")
    # the scenarios are about backend faults, not the tenant's request limit, which a quiet
    # machine's load would otherwise reach
    tenant = policies.path / "tenants" / "eu-bank.yaml"
    tenant.write_text(tenant.read_text().replace("requests_per_minute: 1200", "{}"))
    with (
        run_simulators(policies.path, root / "sim.log"),
        run_gateway(policies.path, root / "gateway.log", **SETTINGS) as gw,
    ):
        yield policies, gw, table


@pytest.fixture
def paris(world: World) -> Iterator[Sim]:
    sims = [Sim(world[0].ports[n]) for n in ("vllm-paris", "vllm-frankfurt")]
    for sim in sims:
        sim.configure(token_interval_s=0.01)  # streams last a little, as real ones do
    yield sims[0]
    for sim in sims:
        sim.reset()


def scenario(name: str, world: World, paris: Sim, fault: dict[str, Any], stream: bool) -> Figures:
    target = Target(
        gateway=world[1],
        headers={
            "authorization": f"Bearer {demo_key('eu-bank')}",
            "x-data-classification": "confidential",  # Paris or Frankfurt, nothing else
        },
        model="mistral-small",
        deployment=PARIS,
        stream=stream,
    )
    healthy = {key: type(value)() for key, value in fault.items()}
    figures = asyncio.run(
        run(name, target, lambda: paris.configure(**fault), lambda: paris.configure(**healthy))
    )
    world[2].append(figures)
    print(figures.row(), figures.statuses)
    return figures


def test_a_backend_that_answers_500(world: World, paris: Sim) -> None:
    figures = scenario(
        "answers 500", world, paris, {"fail_status": 500, "fail_count": 1_000_000}, stream=False
    )
    assert figures.failed == 0  # every request moved on to Frankfurt
    assert figures.time_to_eject_s is not None
    assert figures.time_to_recover_s is not None


def test_a_backend_that_closes_connections(world: World, paris: Sim) -> None:
    figures = scenario(
        "closes connections", world, paris, {"close_connections": True}, stream=False
    )
    assert figures.failed == 0
    assert figures.time_to_eject_s is not None
    assert figures.time_to_recover_s is not None


def test_a_backend_that_hangs(world: World, paris: Sim) -> None:
    figures = scenario("hangs (streams)", world, paris, {"hang": True}, stream=True)
    assert figures.failed == 0  # each waited one first-byte timeout at most, then moved on
    assert figures.time_to_recover_s is not None


def test_a_backend_that_breaks_streams(world: World, paris: Sim) -> None:
    figures = scenario(
        "breaks every stream after 3 chunks",
        world,
        paris,
        {"reset_after_chunks": 3},
        stream=True,
    )
    assert figures.answered >= 0.8 * (figures.answered + figures.failed)
    assert figures.time_to_eject_s is not None
    assert figures.time_to_recover_s is not None
