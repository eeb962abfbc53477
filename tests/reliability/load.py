"""Bounded load against a gateway while one backend is broken and then healed, and the figures
a reliability scenario prints: answered, failed, time to eject, time to recover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Gateway


@dataclass
class Figures:
    scenario: str
    answered: int = 0  # whole answers: 200, and for a stream every event up to [DONE]
    failed: int = 0
    time_to_eject_s: float | None = None  # from the fault to the deployment taken out
    time_to_recover_s: float | None = None  # from the heal to its first whole answer
    statuses: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        return (
            f"| {self.scenario} | {self.answered} | {self.failed} |"
            f" {seconds(self.time_to_eject_s)} | {seconds(self.time_to_recover_s)} |"
        )


HEADER = "| scenario | answered | failed | time to eject | time to recover |\n|---|---|---|---|---|"


@dataclass
class Target:
    """What the load sends: a model, the headers (a tenant's key, a data class), and whether
    it streams; `deployment` is the one the scenario breaks."""

    gateway: Gateway
    headers: dict[str, str]
    model: str
    deployment: str
    stream: bool


async def _one(client: httpx.AsyncClient, target: Target) -> tuple[str, str | None]:
    """('ok' or what failed, the deployment that answered)."""
    body: dict[str, Any] = {
        "model": target.model,
        "messages": [{"role": "user", "content": "reliability"}],
        "stream": target.stream,
    }
    url = target.gateway.v1 + "/chat/completions"
    try:
        async with client.stream("POST", url, json=body, headers=target.headers) as response:
            data = await response.aread()
            served = response.headers.get("x-sovereign-deployment")
            if response.status_code != 200:
                return f"http_{response.status_code}", served
            if target.stream and (b'"error"' in data or not data.rstrip().endswith(b"[DONE]")):
                return "broken_stream", served
            return "ok", served
    except httpx.HTTPError as exc:
        return type(exc).__name__, None


def _health(gw: Gateway, deployment: str) -> tuple[float, bool]:
    """The deployment's ejections so far (for any tenant), and whether it is healthy for all
    (not ejected for every tenant, its backend not down by probe)."""
    text = httpx.get(gw.base + "/metrics", timeout=10).text
    ejections, healthy = 0.0, True
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("deployment") != deployment:
                continue
            if s.name == "sgw_deployment_ejections_total":
                ejections = s.value
            if s.name == "sgw_deployment_healthy":
                healthy = s.value == 1
    return ejections, healthy


async def run(
    scenario: str,
    target: Target,
    break_it: Callable[[], object],
    heal_it: Callable[[], object],
    fault_s: float = 4.0,
    recover_within_s: float = 20.0,
    concurrency: int = 8,
) -> Figures:
    """Load at `concurrency` from the fault for `fault_s`, then heal and keep the load on until
    the broken deployment answers whole again (or `recover_within_s` passed)."""
    figures = Figures(scenario)
    broken_at = healed_at = 0.0
    recovered = asyncio.Event()
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            outcome, served = await _one(client, target)
            figures.statuses[outcome] = figures.statuses.get(outcome, 0) + 1
            if outcome == "ok":
                figures.answered += 1
                if healed_at and served == target.deployment and not recovered.is_set():
                    figures.time_to_recover_s = time.monotonic() - healed_at
                    recovered.set()
            else:
                figures.failed += 1

    before, _ = _health(target.gateway, target.deployment)

    async def watch_ejection() -> None:
        while not stop.is_set() and figures.time_to_eject_s is None:
            ejections, healthy = await asyncio.to_thread(_health, target.gateway, target.deployment)
            if ejections > before or not healthy:
                figures.time_to_eject_s = time.monotonic() - broken_at
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.to_thread(break_it)
        broken_at = time.monotonic()
        tasks: list[Awaitable[None]] = [worker(client) for _ in range(concurrency)]
        running = [asyncio.ensure_future(t) for t in [*tasks, watch_ejection()]]
        await asyncio.sleep(fault_s)
        await asyncio.to_thread(heal_it)
        healed_at = time.monotonic()
        with contextlib.suppress(TimeoutError):  # the figures say "never"; the test asserts
            await asyncio.wait_for(recovered.wait(), recover_within_s)
        stop.set()
        await asyncio.gather(*running)
    return figures
