"""Faults between the gateway and its backends, injected by a TCP proxy of our own: a backend
that accepts and never answers, a connection reset in the middle of a stream, a backend that
refuses connections while an EU-only tenant keeps asking."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.dev.demo import demo_key
from tests.faults.proxy import FaultProxy, Mode
from tests.harness import Gateway, PolicyDir, Sim, error_body, run_gateway, run_simulators

BEHIND_PROXIES = ("mistral-ai", "azure-sweden")


@pytest.fixture(scope="module")
def faulty(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, dict[str, FaultProxy], dict[str, Sim], str]]:
    root = tmp_path_factory.mktemp("faults")
    policies = PolicyDir.from_examples(root / "policies")
    policies.add_tenant(
        {
            "tenant": "eu-only",
            "models": ["gpt-4o"],
            "rules": {"inference_country": {"allow": ["EU"]}},
        }
    )
    key = policies.add_key("euonly02", "eu-only")
    proxies = {name: FaultProxy(policies.ports[name]) for name in BEHIND_PROXIES}
    with (
        run_simulators(policies.path, root / "sim.log"),
        proxies["mistral-ai"].running(),
        proxies["azure-sweden"].running(),
    ):

        def through_proxies(catalog: dict[str, Any]) -> None:
            for name, proxy in proxies.items():
                catalog["backends"][name]["base_url"] = f"http://127.0.0.1:{proxy.port}/v1"

        policies.edit_catalog(through_proxies)  # after the simulators took their ports
        with run_gateway(
            policies.path,
            root / "gw.log",
            first_byte_timeout_s=1.0,
            idle_timeout_s=1.0,
            health_probe_interval_s=0,
            outlier_consecutive_failures=1000,
        ) as gw:
            sims = {n: Sim(p) for n, p in policies.ports.items()}
            yield gw, proxies, sims, key


@pytest.fixture
def proxies(
    faulty: tuple[Gateway, dict[str, FaultProxy], dict[str, Sim], str],
) -> Iterator[dict[str, FaultProxy]]:
    yield faulty[1]
    for proxy in faulty[1].values():
        proxy.mode = Mode()


def acme(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=demo_key("acme-dev"), max_retries=0, timeout=30)


def test_a_backend_that_never_answers_gives_504_in_time_and_leaves_no_socket(
    faulty: tuple[Gateway, dict[str, FaultProxy], dict[str, Sim], str],
    proxies: dict[str, FaultProxy],
) -> None:
    gw = faulty[0]
    proxy = proxies["mistral-ai"]
    proxy.mode = Mode("blackhole")
    began = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        acme(gw).chat.completions.create(
            model="mistral-medium", messages=[{"role": "user", "content": "hello?"}]
        )
    took = time.monotonic() - began
    assert info.value.status_code == 504
    assert error_body(info.value)["code"] == "upstream_timeout"
    assert took < 3.0  # first_byte_timeout_s is 1 s
    deadline = time.monotonic() + 3
    while proxy.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.open_connections == 0  # the gateway closed the hung connection


def test_a_connection_reset_mid_stream_is_an_error_not_a_silent_end(
    faulty: tuple[Gateway, dict[str, FaultProxy], dict[str, Sim], str],
    proxies: dict[str, FaultProxy],
) -> None:
    gw, _, sims, _ = faulty
    sims["mistral-ai"].configure(output_tokens=200)
    proxies["mistral-ai"].mode = Mode("reset", reset_after_bytes=2500)
    received: list[str] = []
    try:
        with pytest.raises(openai.APIError):
            for chunk in acme(gw).chat.completions.create(
                model="mistral-medium", messages=[{"role": "user", "content": "go"}], stream=True
            ):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
    finally:
        sims["mistral-ai"].reset()
    assert received  # some text arrived before the reset


def test_an_eu_only_tenant_whose_eu_backend_refuses_sends_nothing_to_the_us(
    faulty: tuple[Gateway, dict[str, FaultProxy], dict[str, Sim], str],
    proxies: dict[str, FaultProxy],
) -> None:
    gw, _, sims, key = faulty
    proxies["azure-sweden"].mode = Mode("refuse")
    us = sims["openai-us"].state()["received"]
    statuses = []
    for _ in range(10):
        answer = httpx.post(
            gw.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
        statuses.append(answer.status_code)
    assert set(statuses) == {502}
    assert sims["openai-us"].state()["received"] == us
    assert proxies["azure-sweden"].accepted >= 10
