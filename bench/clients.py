"""The upstream leg's client, measured against well-kept clients on the same load.

    python -m bench.clients [--rounds 3] [--seconds 3] [--concurrency 1,16,64] [--quick]

Each cell runs one client in a fresh process pinned to core 1 (uvloop, as the gateway serves),
posting the benchmark's chat completion to `bench/upstream.py` on core 0 from N concurrent tasks
for a fixed time: JSON answers read whole, streams read chunk by chunk to their end, as the
gateway relays them. Clients alternate within each round (reversed every other round). Reported:
medians over rounds of requests/s, latency, the client process's CPU time per request (all its
threads: pyreqwest's Rust runtime included), the seconds per second its threads ran ("on CPU")
and were ready to run but waited for a core ("waiting for CPU", from /proc's schedstat: on a
shared machine, what bounds the rate), then the ratios taken round by round.

pyreqwest is not a dependency of the gateway: `pip install -r requirements/bench-clients.txt`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop

from gateway.upstream.http1 import HTTPClient

CLIENTS = ("http1", "aiohttp", "pyreqwest")
HEADERS = {"content-type": "application/json"}

BODY = {  # the request bench.run posts (kept here: a worker imports nothing of the bench harness)
    stream: orjson.dumps(
        {
            "model": "bench",
            "stream": stream,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "benchmark"}],
        }
    )
    for stream in (False, True)
}

Call = Callable[[], Awaitable[bool]]  # one request, read to its end: True when it was a 200


async def _http1(
    url: str, body: bytes, stream: bool, n: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = HTTPClient(url, pool_size=n, connect_s=5, first_byte_s=30, idle_s=30, headers=HEADERS)

    async def call() -> bool:
        response = await client.request("POST", "/chat/completions", body, whole=not stream)
        try:
            async for _ in response.chunks():
                pass
        finally:
            response.close()
        return response.status == 200

    return call, client.aclose


async def _aiohttp(
    url: str, body: bytes, stream: bool, n: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n))
    target = url + "/chat/completions"

    async def call() -> bool:
        async with session.post(target, data=body, headers=HEADERS) as response:
            if stream:
                async for _ in response.content.iter_any():
                    pass
            else:
                await response.read()
            return response.status == 200

    return call, session.close


async def _pyreqwest(
    url: str, body: bytes, stream: bool, n: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().http1_only().pool_max_idle_per_host(n).max_connections(n).build()
    target = url + "/chat/completions"

    async def call() -> bool:
        request = client.post(target).header("content-type", "application/json").body_bytes(body)
        if not stream:
            response = await request.build().send()
            await response.bytes()
            return response.status == 200
        async with request.build_streamed() as streamed:
            while await streamed.body_reader.read_chunk() is not None:
                pass
            return streamed.status == 200

    return call, client.close


MAKERS = {"http1": _http1, "aiohttp": _aiohttp, "pyreqwest": _pyreqwest}


async def _load(client: str, url: str, stream: bool, n: int, seconds: float) -> dict[str, float]:
    call, close = await MAKERS[client](url, BODY[stream], stream, n)
    for _ in range(2 * n):  # warm: connections open, code paths hot
        await call()
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            began = time.perf_counter()
            if await call():
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

    cpu, waited, began = time.process_time(), _run_queue_s(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(n)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    waited = _run_queue_s() - waited
    await close()
    latencies.sort()
    done = len(latencies)
    return {
        "rps": done / elapsed,
        "p50": latencies[done // 2] * 1000,
        "p99": latencies[min(done - 1, int(done * 0.99))] * 1000,
        "cpu_ms": cpu / done * 1000,
        "cpu_share": cpu / elapsed,
        "queued_share": waited / elapsed,
        "errors": errors,
    }


def _run_queue_s() -> float:
    """Seconds this process's threads have spent ready to run while waiting for a core."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def _cell(client: str, url: str, stream: bool, n: int, seconds: float) -> dict[str, float]:
    from bench.run import _pin

    cmd = [*_pin("1"), sys.executable, "-m", "bench.clients", "--worker", client, "--url", url]
    cmd += ["--mode", "stream" if stream else "json", "--concurrency", str(n)]
    out = subprocess.run([*cmd, "--seconds", str(seconds)], check=True, capture_output=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _version(name: str) -> str:
    from importlib.metadata import version

    return f"{name} {version(name)}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, short cells")
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["json", "stream"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(
                _load(
                    args.worker,
                    args.url,
                    args.mode == "stream",
                    int(args.concurrency),
                    args.seconds,
                )
            )
        print(json.dumps(result))
        return 0
    from bench.run import _alternate, _pin, _spawn
    from tests.harness import free_port, wait_http

    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 1.0, "1,4"
    clients = args.clients.split(",")
    if "pyreqwest" in clients and importlib.util.find_spec("pyreqwest") is None:
        parser.error(
            "pyreqwest is missing: `pip install -r requirements/bench-clients.txt`"
            " (or pass --clients http1,aiohttp)"
        )
    levels = [int(c) for c in args.concurrency.split(",")]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    runs: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    with _spawn([*_pin("0"), sys.executable, "-m", "bench.upstream", str(port)]):
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        for round_ in range(args.rounds):
            for mode in ("json", "stream"):
                for n in levels:
                    for client, _ in _alternate({c: c for c in clients}, round_):
                        cell = _cell(client, url, mode == "stream", n, args.seconds)
                        runs.setdefault((mode, n, client), []).append(cell)
    print(_report(runs, clients, levels, args))
    return 0


def _report(
    runs: dict[tuple[str, int, str], list[dict[str, float]]],
    clients: list[str],
    levels: list[int],
    args: argparse.Namespace,
) -> str:
    from bench.run import ratios

    names = {
        "http1": "gateway http1",
        "aiohttp": _version("aiohttp"),
        "pyreqwest": _version("pyreqwest") if "pyreqwest" in clients else "",
    }
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" {args.rounds} round(s) of {args.seconds:g}s per cell, medians",
        "cores: upstream 0, client 1 (uvloop)",
        "",
        "| mode | conc. | client | req/s | p50 ms | p99 ms | CPU ms/req | on CPU | waiting for CPU"
        " | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for n in levels:
            for client in clients:
                cells = runs[(mode, n, client)]

                def med(key: str, cells: list[dict[str, float]] = cells) -> float:
                    return statistics.median(c[key] for c in cells)

                errors = int(sum(c["errors"] for c in cells))
                lines.append(
                    f"| {mode} | {n} | {names[client]} | {med('rps'):,.0f} | {med('p50'):.2f} |"
                    f" {med('p99'):.2f} | {med('cpu_ms'):.3f} | {med('cpu_share'):.2f} |"
                    f" {med('queued_share'):.2f} | {errors} |"
                )
    others = [c for c in clients if c != "http1"]
    if "http1" in clients and others:
        head = " | ".join(f"http1/{c} req/s | {c}/http1 CPU per req" for c in others)
        lines += ["", "ratios taken round by round: median (lowest-highest)", ""]
        lines += [f"| mode | conc. | {head} |", "|---|---|" + "---|---|" * len(others)]
        for mode in ("json", "stream"):
            for n in levels:
                ours = runs[(mode, n, "http1")]
                row: list[str] = []
                for c in others:
                    theirs = runs[(mode, n, c)]
                    row.append(ratios([o["rps"] for o in ours], [t["rps"] for t in theirs]))
                    row.append(ratios([t["cpu_ms"] for t in theirs], [o["cpu_ms"] for o in ours]))
                lines.append(f"| {mode} | {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
