"""An async load generator: N workers sending the same request for a fixed time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run_load(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    first_error = ""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm the connections
        for _ in range(min(concurrency, 4)):
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, first_error
            while time.perf_counter() < stop:
                began = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                    if r.status != 200:
                        errors += 1
                        first_error = (
                            first_error or f"{r.status} {data[:160].decode(errors='replace')}"
                        )
                        continue
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return LoadResult(len(latencies), errors, elapsed, latencies, first_error)
