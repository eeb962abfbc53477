"""Backends that fail in the ways real ones do, behind a real gateway: streams that break after
their first chunks, backends that accept requests and never answer, backends that close every
connection and then heal, and one tenant whose requests make a backend answer 500.

`mistral-small` for `eu-bank` with `x-data-classification: confidential` has exactly two
deployments, both self-hosted vLLM in the same tier (Paris and Frankfurt); `deepseek-v3` has one
(Frankfurt)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import openai
import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, Sim, run_gateway, run_simulators
from tests.routing.test_health import metric

PARIS = "mistral-small@vllm-paris"
CONFIDENTIAL = {"x-data-classification": "confidential"}
SETTINGS: dict[str, Any] = {
    "health_probe_interval_s": 0.2,
    "vllm_metrics_interval_s": 0,
    "outlier_consecutive_failures": 3,
    "outlier_base_ejection_s": 2.0,
    "stream_first_byte_timeout_s": 1.0,
    "first_byte_timeout_s": 60.0,
    "log_level": "warning",
    "audit_checkpoint_interval_s": 0.5,
}
GatewayWith = Callable[..., AbstractContextManager[Gateway]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicyDir, dict[str, str]]]:
    root = tmp_path_factory.mktemp("faults")
    policies = PolicyDir.from_examples(root / "policies")
    keys = {"eu-bank": demo_key("eu-bank")}
    for tenant in ("noisy", "quiet"):
        policies.add_tenant({"tenant": tenant, "models": ["deepseek-v3"]})
        keys[tenant] = policies.add_key(f"{tenant}0001", tenant)
    with run_simulators(policies.path, root / "sim.log"):
        yield policies, keys


@pytest.fixture
def sims(world: tuple[PolicyDir, dict[str, str]]) -> Iterator[dict[str, Sim]]:
    found = {n: Sim(p) for n, p in world[0].ports.items()}
    yield found
    for sim in found.values():
        sim.reset()


@pytest.fixture
def gateway_with(
    world: tuple[PolicyDir, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> GatewayWith:
    def start(**overrides: Any) -> AbstractContextManager[Gateway]:
        log = tmp_path_factory.mktemp("gw") / "gateway.log"
        return run_gateway(world[0].path, log, **{**SETTINGS, **overrides})

    return start


async def stream_once(client: openai.AsyncOpenAI, model: str = "mistral-small") -> str:
    """'ok' when the stream ended with a finish_reason, else what went wrong."""
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "tell me"}],
            stream=True,
            extra_headers=CONFIDENTIAL,
        )
        finished = False
        async for chunk in stream:
            finished = finished or any(c.finish_reason for c in chunk.choices)
        return "ok" if finished else "truncated"
    except openai.APIError as exc:
        return type(exc).__name__


async def streams(gw: Gateway, total: int, concurrency: int) -> list[str]:
    client = openai.AsyncOpenAI(
        base_url=gw.v1, api_key=demo_key("eu-bank"), max_retries=0, timeout=20
    )
    gate = asyncio.Semaphore(concurrency)

    async def one() -> str:
        async with gate:
            return await stream_once(client)

    try:
        return await asyncio.gather(*(one() for _ in range(total)))
    finally:
        await client.close()


def chat(gw: Gateway, key: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {key}", **CONFIDENTIAL},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        timeout=30,
    )


def plain_chat(gw: Gateway, key: str, **extra: Any) -> httpx.Response:
    """deepseek-v3, whose only deployment is on vllm-frankfurt, without a data class."""
    return httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "deepseek-v3", "messages": [{"role": "user", "content": "x"}], **extra},
        timeout=30,
    )


def test_a_backend_that_breaks_every_stream_is_ejected(
    gateway_with: GatewayWith, sims: dict[str, Sim]
) -> None:
    sims["vllm-paris"].configure(reset_after_chunks=3, token_interval_s=0.02)
    sims["vllm-frankfurt"].configure(token_interval_s=0.02)
    with gateway_with(outlier_consecutive_failures=2) as gw:
        outcomes = asyncio.run(streams(gw, total=80, concurrency=8))
        ejections = metric(gw, "sgw_deployment_ejections_total", deployment=PARIS)
    ok = outcomes.count("ok")

    assert ejections >= 1
    # a stream that broke after its first byte cannot be retried, but the breaker does not get
    # more traffic for failing fast: most streams are served whole
    assert ok >= 64, outcomes


def test_a_hung_backend_is_found_in_seconds_and_taken_back_when_it_answers(
    gateway_with: GatewayWith, sims: dict[str, Sim]
) -> None:
    paris = sims["vllm-paris"]
    paris.configure(hang=True)
    received = paris.state()["received"]
    with gateway_with() as gw:
        began = time.monotonic()
        outcomes = asyncio.run(streams(gw, total=12, concurrency=3))
        took = time.monotonic() - began
        assert outcomes == ["ok"] * 12  # each waited 1 s at most on Paris, then went on
        assert took < 15
        # its timeouts counted against it: it was tried a few times, not for every request
        assert paris.state()["received"] - received <= 6
        paris.configure(hang=False)
        healed = time.monotonic()
        while (
            chat(gw, demo_key("eu-bank"), "mistral-small").headers.get("x-sovereign-deployment")
            != PARIS
        ):
            assert time.monotonic() - healed < 15, "Paris got no traffic back"
            time.sleep(0.2)


def test_no_attempt_starts_or_runs_past_the_request_deadline(
    gateway_with: GatewayWith, sims: dict[str, Sim]
) -> None:
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(hang=True)
    with gateway_with(request_deadline_s=2.0, stream_first_byte_timeout_s=1.5) as gw:
        client = openai.OpenAI(
            base_url=gw.v1, api_key=demo_key("eu-bank"), max_retries=0, timeout=20
        )
        began = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(
                model="mistral-small",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_headers=CONFIDENTIAL,
            )
        took = time.monotonic() - began
    assert raised.value.status_code == 504
    # the second deployment was tried with what was left of the 2 s, not for 1.5 s more
    assert took < 2.7, took


def test_a_backend_that_closed_connections_is_back_as_soon_as_it_heals(
    gateway_with: GatewayWith, sims: dict[str, Sim]
) -> None:
    paris = sims["vllm-paris"]
    key = demo_key("eu-bank")
    with gateway_with(outlier_base_ejection_s=10.0, health_probe_interval_s=1.0) as gw:

        async def load(seconds: float) -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                end = time.monotonic() + seconds
                statuses: list[int] = []

                async def worker() -> None:
                    # fewer than eu-bank's 1,200 requests a minute, however fast the machine
                    while time.monotonic() < end and len(statuses) < 900:
                        r = await client.post(
                            gw.v1 + "/chat/completions",
                            headers={"authorization": f"Bearer {key}", **CONFIDENTIAL},
                            json={"model": "mistral-small", "messages": [{"role": "user"}]},
                        )
                        statuses.append(r.status_code)

                await asyncio.gather(*(worker() for _ in range(6)))
                return statuses

        paris.configure(close_connections=True)
        statuses = asyncio.run(load(3.0))
        # every one failed over to Frankfurt
        assert statuses.count(200) == len(statuses), collections.Counter(statuses)
        paris.configure(close_connections=False)
        healed = time.monotonic()
        while chat(gw, key, "mistral-small").headers.get("x-sovereign-deployment") != PARIS:
            # one probe interval after it heals, not the 10 s (or more) of its ejection
            assert time.monotonic() - healed < 3, "Paris is still ejected"
            time.sleep(0.1)


def test_one_tenants_failing_requests_do_not_deny_service_to_another(
    gateway_with: GatewayWith, sims: dict[str, Sim], world: tuple[PolicyDir, dict[str, str]]
) -> None:
    keys = world[1]
    sims["vllm-frankfurt"].configure(fail_user="poison")
    with gateway_with() as gw:

        async def both() -> tuple[list[int], list[int]]:
            async with httpx.AsyncClient(timeout=30) as client:

                async def send(tenant: str, **extra: Any) -> int:
                    r = await client.post(
                        gw.v1 + "/chat/completions",
                        headers={"authorization": f"Bearer {keys[tenant]}"},
                        json={"model": "deepseek-v3", "messages": [{"role": "user"}], **extra},
                    )
                    return r.status_code

                noisy: list[int] = []
                quiet: list[int] = []
                for _ in range(8):
                    noisy += await asyncio.gather(*(send("noisy", user="poison") for _ in range(3)))
                    quiet.append(await send("quiet"))
                return noisy, quiet

        noisy, quiet = asyncio.run(both())
        refused = plain_chat(gw, keys["noisy"])
    assert quiet == [200] * 8
    assert 500 in noisy and 503 in noisy  # its own streak took the deployment away from it
    assert refused.status_code == 503
    assert "for tenant noisy" in refused.json()["error"]["message"]


def test_a_wrongly_typed_field_is_a_400_as_from_vllm_and_does_not_eject(
    gateway_with: GatewayWith, sims: dict[str, Sim], world: tuple[PolicyDir, dict[str, str]]
) -> None:
    direct = httpx.post(
        sims["vllm-frankfurt"].url + "/v1/chat/completions",
        json={"model": "deepseek-ai/DeepSeek-V3", "messages": [], "max_tokens": "abc"},
    )
    assert direct.status_code == 400
    error = direct.json()["error"]
    assert error["code"] == 400 and error["type"] == "Bad Request"
    assert "max_tokens" in error["message"]
    key = world[1]["quiet"]
    with gateway_with() as gw:
        for _ in range(5):
            answer = plain_chat(gw, key, max_tokens="abc")
            assert answer.status_code == 400
            assert "max_tokens" in answer.json()["error"]["message"]
        assert plain_chat(gw, key).status_code == 200
