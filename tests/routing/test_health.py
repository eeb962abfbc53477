"""Health and load in routing, against simulated backends: ejection after failures and return,
an EU-only tenant whose EU backend dies (nothing goes to the US), a dead backend found by probes,
and the least-loaded vLLM backend by its /metrics getting the traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.dev.demo import demo_key
from tests.harness import (
    Gateway,
    PolicyDir,
    Sim,
    add_dead_backend,
    run_gateway,
    run_simulators,
    sovereign_gateway,
)

SETTINGS = {
    "health_probe_interval_s": 0.2,
    "vllm_metrics_interval_s": 0.2,
    "outlier_consecutive_failures": 2,
    "outlier_base_ejection_s": 1.0,
    "log_level": "warning",
    "audit_checkpoint_interval_s": 0.5,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, PolicyDir, str]]:
    root = tmp_path_factory.mktemp("health")
    policies = PolicyDir.from_examples(root / "policies")
    add_dead_backend(policies)
    policies.add_tenant(
        {
            "tenant": "eu-only",
            "models": ["gpt-4o"],
            "rules": {"inference_country": {"allow": ["EU"]}},
        }
    )
    key = policies.add_key("euonly01", "eu-only")

    def probes(catalog: dict[str, Any]) -> None:
        catalog["backends"]["mistral-ai"]["probe_path"] = None
        catalog["backends"]["scaleway-paris"]["probe_path"] = "/health"

    policies.edit_catalog(probes)
    with (
        run_simulators(policies.path, root / "sim.log"),
        run_gateway(policies.path, root / "gw.log", **SETTINGS) as gw,
    ):
        time.sleep(0.5)  # a first round of probes and metrics
        yield gw, policies, key


@pytest.fixture
def sims(setup: tuple[Gateway, PolicyDir, str]) -> Iterator[dict[str, Sim]]:
    found = {n: Sim(p) for n, p in setup[1].ports.items() if n != "dead-backend"}
    yield found
    for sim in found.values():
        sim.reset()
    time.sleep(1.2)  # let any ejection run out


def chat(gw: Gateway, key: str, model: str, **headers: str) -> httpx.Response:
    return httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {key}", **headers},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def metric(gw: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(gw.base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_failures_in_a_row_eject_a_deployment_until_its_time_is_up(
    setup: tuple[Gateway, PolicyDir, str], sims: dict[str, Sim]
) -> None:
    gw, _, _ = setup
    acme = demo_key("acme-dev")
    frankfurt = sims["vllm-frankfurt"]
    frankfurt.configure(fail_status=500, fail_count=2)
    dep = "llama-3.1-8b@vllm-frankfurt"
    for _ in range(2):  # two failures in a row, each failed over to the next tier
        answer = chat(gw, acme, "llama-3.1-8b")
        assert answer.status_code == 200 and answer.headers["x-sovereign-deployment"] != dep
    received = frankfurt.state()["received"]
    answer = chat(gw, acme, "llama-3.1-8b")
    assert answer.status_code == 200 and answer.headers["x-sovereign-deployment"] != dep
    assert frankfurt.state()["received"] == received  # not even tried while ejected
    # only acme-dev's requests failed: the deployment is ejected for acme-dev alone
    answer = chat(gw, demo_key("eu-bank"), "llama-3.1-8b")
    assert answer.status_code == 200 and answer.headers["x-sovereign-deployment"] == dep
    assert metric(gw, "sgw_deployment_ejections_total", deployment=dep) == 1
    assert metric(gw, "sgw_deployment_healthy", deployment=dep) == 1
    time.sleep(1.1)
    answer = chat(gw, acme, "llama-3.1-8b")
    assert answer.headers["x-sovereign-deployment"] == dep  # back, and first in its tier
    assert metric(gw, "sgw_deployment_healthy", deployment=dep) == 1


def test_an_eu_only_tenant_whose_eu_backend_dies_sends_nothing_to_the_us(
    setup: tuple[Gateway, PolicyDir, str], sims: dict[str, Sim]
) -> None:
    gw, _, key = setup
    sims["azure-sweden"].configure(fail_status=503, fail_count=10_000)
    us_before = sims["openai-us"].state()["received"]

    async def load() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:

            async def one() -> httpx.Response:
                return await client.post(
                    gw.v1 + "/chat/completions",
                    headers={"authorization": f"Bearer {key}"},
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                )

            answers: list[httpx.Response] = []
            for _ in range(4):  # waves of 6 concurrent requests
                answers += await asyncio.gather(*(one() for _ in range(6)))
            return answers

    answers = asyncio.run(load())
    assert {a.status_code for a in answers} == {503}
    assert sims["openai-us"].state()["received"] == us_before
    codes = [a.json()["error"]["code"] for a in answers]
    assert "no_healthy_backend" in codes
    refused = next(a for a in answers if a.json()["error"]["code"] == "no_healthy_backend")
    reasons = refused.json()["error"]["deployments"]
    assert [r["deployment"] for r in reasons] == ["gpt-4o@azure-sweden"]
    assert "ejected" in reasons[0]["reason"]
    # every one of them is in the audit log as a 503, with the deployment it did not use
    time.sleep(0.1)
    store = f"sqlite:{gw.log.with_suffix('.audit.sqlite3')}"
    done = sovereign_gateway(
        "audit", "query", "--store", store, "--tenant", "eu-only", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    records = [orjson.loads(line) for line in out.splitlines()]
    ids = {a.headers["x-request-id"] for a in answers}
    mine = [r for r in records if r["request_id"] in ids]
    assert len(mine) == 24 and {r["status"] for r in mine} == {503}
    assert all(a["deployment"] == "gpt-4o@azure-sweden" for r in mine for a in r["attempts"])


def test_a_backend_that_fails_its_probe_is_not_tried(setup: tuple[Gateway, PolicyDir, str]) -> None:
    gw, _, _ = setup
    answer = chat(gw, demo_key("acme-dev"), "ghost")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "no_healthy_backend"
    assert "health probe of dead-backend failed" in error["message"]


def test_the_least_loaded_vllm_backend_by_its_metrics_gets_the_traffic(
    setup: tuple[Gateway, PolicyDir, str], sims: dict[str, Sim]
) -> None:
    gw, _, _ = setup
    sims["vllm-paris"].configure(waiting=12, kv_cache_usage=0.9)
    time.sleep(0.6)  # the next reads of /metrics
    assert metric(gw, "sgw_vllm_num_requests_waiting", backend="vllm-paris") == 12
    bank = demo_key("eu-bank")
    served = [
        chat(gw, bank, "mistral-small", **{"x-data-classification": "confidential"}).headers[
            "x-sovereign-deployment"
        ]
        for _ in range(20)
    ]
    assert served.count("mistral-small@vllm-frankfurt") == 20
    sims["vllm-paris"].configure(waiting=0, kv_cache_usage=0.0)
    sims["vllm-frankfurt"].configure(waiting=12)
    time.sleep(0.6)
    served = [
        chat(gw, bank, "mistral-small", **{"x-data-classification": "confidential"}).headers[
            "x-sovereign-deployment"
        ]
        for _ in range(10)
    ]
    assert served.count("mistral-small@vllm-paris") == 10


def test_each_backend_is_probed_on_its_own_path_or_not_at_all(
    setup: tuple[Gateway, PolicyDir, str], sims: dict[str, Sim]
) -> None:
    before = {name: sim.state()["hits"] for name, sim in sims.items()}
    time.sleep(0.6)  # a few rounds of probes

    def probed(name: str, path: str) -> int:
        return int(sims[name].state()["hits"].get(path, 0) - before[name].get(path, 0))

    assert probed("vllm-paris", "/health") > 0  # vllm: /health at the root
    assert probed("ionos-berlin", "/v1/models") > 0  # other kinds: /models
    assert probed("scaleway-paris", "/health") > 0  # as its catalog entry says
    assert probed("scaleway-paris", "/v1/models") == 0
    assert probed("mistral-ai", "/health") == probed("mistral-ai", "/v1/models") == 0  # null
