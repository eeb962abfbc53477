from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.dev.demo import demo_key
from tests.harness import (
    AsyncClientFor,
    ClientFor,
    Gateway,
    PolicyDir,
    Sim,
    add_dead_backend,
    run_gateway,
    run_simulators,
)

GATEWAY_SETTINGS = {
    "max_body_bytes": 65536,
    "first_byte_timeout_s": 2.0,
    "idle_timeout_s": 2.0,
    "log_level": "warning",
    "audit_checkpoint_interval_s": 0.5,
    # tests here make backends fail on purpose; health is tested with its own gateway
    "health_probe_interval_s": 0,
    "outlier_consecutive_failures": 1000,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> PolicyDir:
    policies = PolicyDir.from_examples(tmp_path_factory.mktemp("run") / "policies")
    add_dead_backend(policies)
    policies.add_tenant(
        {"tenant": "limited", "models": ["mistral-small"], "limits": {"requests_per_minute": 2}}
    )
    policies.add_tenant(
        {"tenant": "flooder", "models": ["mistral-small"], "limits": {"requests_per_minute": 2}}
    )
    return policies


@pytest.fixture(scope="session")
def keys(policy_dir: PolicyDir) -> dict[str, str]:
    found = {t: demo_key(t) for t in ("fr-public-body", "eu-bank", "research-lab", "acme-dev")}
    found["limited"] = policy_dir.add_key("limited1", "limited")
    found["flooder"] = policy_dir.add_key("flooder1", "flooder")
    return found


@pytest.fixture(scope="session")
def gateway(
    policy_dir: PolicyDir, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("logs")
    with (
        run_simulators(policy_dir.path, logs / "sim.log"),
        run_gateway(policy_dir.path, logs / "gateway.log", **GATEWAY_SETTINGS) as gw,
    ):
        yield gw


@pytest.fixture
def sims(policy_dir: PolicyDir, gateway: Gateway) -> Iterator[dict[str, Sim]]:
    found = {name: Sim(port) for name, port in policy_dir.ports.items() if name != "dead-backend"}
    yield found
    for sim in found.values():
        sim.reset()
    # a request a test left behind (a slow first token, say) must not count in the next test
    deadline = time.monotonic() + 10
    while any(sim.state()["running"] for sim in found.values()) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def client_for(gateway: Gateway, keys: dict[str, str]) -> ClientFor:
    def make(tenant: str = "acme-dev") -> openai.OpenAI:
        return openai.OpenAI(base_url=gateway.v1, api_key=keys[tenant], max_retries=0, timeout=20)

    return make


@pytest.fixture
def async_client_for(gateway: Gateway, keys: dict[str, str]) -> AsyncClientFor:
    def make(tenant: str = "acme-dev") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=gateway.v1, api_key=keys[tenant], max_retries=0, timeout=20
        )

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/test_llama" in str(Path(str(item.fspath)).as_posix()):
            item.add_marker(pytest.mark.llama)
