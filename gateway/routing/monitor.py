"""Background reads of the backends in the catalog in force: health probes and vLLM load.

Every `probe_interval_s`, each backend is probed with a GET of its `probe_path` (by default
`/health` at the root of a vLLM server, `/models` under the base URL of other kinds, nothing for
litellm; null in the catalog: no probe); every `metrics_interval_s`, each backend with a
`metrics_url` has its `vllm:num_requests_running`, `vllm:num_requests_waiting` and
`vllm:kv_cache_usage_perc` read (summed over engines; the KV figure is the largest). Only URLs
from the catalog are read.

Both go through the gateway's own HTTP/1.1 client, one small pool per origin: a GET of a fixed
path is exactly what it does, so the upstream leg and its probes share one client and one set of
transport errors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from gateway.policy.compile import CompiledPolicy
from gateway.policy.schema import Backend, BackendKind
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker, VLLMLoad
from gateway.tasks import cancel_and_wait
from gateway.upstream.http1 import HTTPClient, HTTPClientError

log = logging.getLogger("gateway.routing")

VLLM_FIGURES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
}


PROBE_POOL = 2  # connections per origin for probes and metrics reads


def probe_url(backend: Backend) -> str | None:
    """The URL the health probe GETs, or None when the backend is not probed."""
    base = str(backend.base_url).rstrip("/")
    parts = urlsplit(base)
    path = backend.probe_path
    if path == "auto":
        if backend.kind is BackendKind.LITELLM:
            return None
        if backend.kind is not BackendKind.VLLM:
            return base + "/models"
        path = "/health"
    if path is None:
        return None
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


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
        *,
        policy: Callable[[], CompiledPolicy],
        health: HealthTracker,
        load: LoadTracker,
        probe_interval_s: float,
        metrics_interval_s: float,
        timeout_s: float = 2.0,
        tls: Callable[[str, Backend], ssl.SSLContext | None] = lambda name, backend: None,
    ) -> None:
        self._policy = policy
        self._health = health
        self._load = load
        self._probe_interval = probe_interval_s
        self._metrics_interval = metrics_interval_s
        self._timeout_s = timeout_s
        self._tls = tls  # a backend's own CA or client certificate, if its catalog entry has one
        self._clients: dict[str, HTTPClient] = {}  # one per origin
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
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def _get(self, url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
        """GET `url` within the timeout: its status and body."""
        parts = urlsplit(url)
        origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        client = self._clients.get(origin)
        if client is None:
            t = self._timeout_s
            client = HTTPClient(
                origin,
                pool_size=PROBE_POOL,
                connect_s=t,
                first_byte_s=t,
                idle_s=t,
                ssl_context=context,
            )
            self._clients[origin] = client
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        async with asyncio.timeout(self._timeout_s * 2):
            response = await client.request("GET", target, whole=True)
            try:
                return response.status, await response.read()
            finally:
                response.close()

    async def _forget_clients(self, keep: set[str]) -> None:
        """Close the clients of origins the catalog no longer names."""
        for origin in set(self._clients) - keep:
            await self._clients.pop(origin).aclose()

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await action()
            except Exception:  # a monitor must outlive any one failure
                log.exception("backend monitor failed; it keeps going")
            await asyncio.sleep(interval)

    async def probe(self) -> None:
        backends = self._policy().policy.catalog.backends
        urls = {n: probe_url(b) for n, b in backends.items()}
        probed = {n: url for n, url in urls.items() if url is not None}
        for name in set(self._health.backends_down()) - set(probed):
            self._health.backend_probed(name, None)  # no longer probed: no longer down by probe
        await self._forget_clients(self._origins(backends))
        started = self._health.now()
        problems = await asyncio.gather(
            *(self._probe_one(url, self._tls(n, backends[n])) for n, url in probed.items())
        )
        for name, problem in zip(probed, problems, strict=True):
            for deployment in self._health.backend_probed(name, problem, started):
                self._load.forget_failures(deployment)

    def _origins(self, backends: dict[str, Backend]) -> set[str]:
        urls = [probe_url(b) for b in backends.values()]
        urls += [str(b.metrics_url) for b in backends.values() if b.metrics_url is not None]
        return {
            urlunsplit((p.scheme, p.netloc, "", "", ""))
            for p in (urlsplit(u) for u in urls if u is not None)
        }

    async def _probe_one(self, url: str, context: ssl.SSLContext | None) -> str | None:
        try:
            status, _ = await self._get(url, context)
        except TimeoutError:
            return f"no answer in {self._timeout_s:g} s"
        except (HTTPClientError, OSError) as exc:
            return type(exc).__name__
        return None if status < 500 else f"HTTP {status}"

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
            status, body = await self._get(url, context)
            if status != 200:
                return None
            return parse_vllm_metrics(body.decode("utf-8", "replace"))
        except (HTTPClientError, TimeoutError, OSError, ValueError):
            return None
