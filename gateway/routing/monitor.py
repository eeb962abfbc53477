"""Background reads of the backends in the catalog in force: health probes and vLLM load.

Every `probe_interval_s`, each backend is probed (`/health` at the root of a vLLM server, `/models`
under the base URL of other kinds); every `metrics_interval_s`, each backend with a `metrics_url`
has its `vllm:num_requests_running`, `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`
read (summed over engines; the KV figure is the largest). Only URLs from the catalog are read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.policy.compile import CompiledPolicy
from gateway.policy.schema import Backend, BackendKind
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker, VLLMLoad
from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.routing")

VLLM_FIGURES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
}


def probe_url(backend: Backend) -> str:
    base = str(backend.base_url).rstrip("/")
    if backend.kind is BackendKind.VLLM:
        parts = urlsplit(base)
        return urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))
    return base + "/models"


def parse_vllm_metrics(text: str) -> VLLMLoad | None:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        figure = VLLM_FIGURES.get(family.name)
        if figure is None:
            continue
        values = [s.value for s in family.samples]
        if values:
            found[figure] = max(values) if figure == "kv_cache_usage" else sum(values)
    if not found:
        return None
    return VLLMLoad(
        running=found.get("running", 0.0),
        waiting=found.get("waiting", 0.0),
        kv_cache_usage=found.get("kv_cache_usage", 0.0),
    )


class BackendMonitor:
    def __init__(
        self,
        policy: Callable[[], CompiledPolicy],
        health: HealthTracker,
        load: LoadTracker,
        probe_interval_s: float,
        metrics_interval_s: float,
        timeout_s: float = 2.0,
        tls: Callable[[str, Backend], ssl.SSLContext | None] = lambda name, backend: None,
    ) -> None:
        self._tls = tls  # a backend's own CA or client certificate, if its catalog entry has one
        self._policy = policy
        self._health = health
        self._load = load
        self._probe_interval = probe_interval_s
        self._metrics_interval = metrics_interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._probe_interval > 0:
            self._tasks.append(asyncio.create_task(self._every(self._probe_interval, self.probe)))
        if self._metrics_interval > 0:
            self._tasks.append(
                asyncio.create_task(self._every(self._metrics_interval, self.read_metrics))
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await action()
            except Exception:  # a monitor must outlive any one failure
                log.exception("backend monitor failed; it keeps going")
            await asyncio.sleep(interval)

    async def probe(self) -> None:
        backends = self._policy().policy.catalog.backends
        names = [n for n, b in backends.items() if b.kind is not BackendKind.LITELLM]
        problems = await asyncio.gather(*(self._probe_one(n, backends[n]) for n in names))
        for name, problem in zip(names, problems, strict=True):
            self._health.backend_probed(name, problem)

    async def _probe_one(self, name: str, backend: Backend) -> str | None:
        try:
            context = self._tls(name, backend) or True
            async with self._client().get(probe_url(backend), ssl=context) as response:
                await response.read()
                return None if response.status < 500 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__

    async def read_metrics(self) -> None:
        backends = self._policy().policy.catalog.backends
        with_metrics = {n: b for n, b in backends.items() if b.metrics_url is not None}
        for name in set(self._load.vllm_snapshot()) - set(with_metrics):
            self._load.set_vllm(name, None)
        results = await asyncio.gather(
            *(
                self._metrics_one(str(b.metrics_url), self._tls(n, b))
                for n, b in with_metrics.items()
            )
        )
        for name, result in zip(with_metrics, results, strict=True):
            self._load.set_vllm(name, result)

    async def _metrics_one(self, url: str, context: ssl.SSLContext | None) -> VLLMLoad | None:
        try:
            async with self._client().get(url, ssl=context or True) as response:
                if response.status != 200:
                    return None
                return parse_vllm_metrics(await response.text())
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None
