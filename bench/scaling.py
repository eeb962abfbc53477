"""How the gateway's cost grows with the work: many long streams held open, and body size.

    python -m bench.scaling [--streams 1000] [--chunks 50] [--interval-ms 100]
        [--sizes 1024,10240,102400,1048576] [--seconds 3]

Streams: N clients each open a stream of `--chunks` chunks sent `--interval-ms` apart, all at
once, through the bare proxy and through the gateway (audit on, SQLite). Reported: streams that
completed with every chunk, peak resident memory over idle divided by N (memory per open stream),
and the proxy's CPU time divided by the chunks relayed (CPU per chunk).

Body size: requests and responses of each size (the prompt and the completion both that long),
under wrk at concurrency 4, direct, bare proxy and gateway: requests/s, p50 and CPU per request.

The upstream and the load share core 0; each proxy runs alone on core 1, as in `bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import orjson

from bench.run import KEY, _cpu_seconds, _pin, _policy_dir, _rss_mb, _spawn
from bench.wrk import run_wrk
from tests.harness import free_port, wait_http


def _stream_body(chunks: int, interval_ms: int) -> bytes:
    return orjson.dumps(
        {
            "model": "bench",
            "stream": True,
            "max_tokens": chunks,
            "bench_interval_ms": interval_ms,
            "messages": [{"role": "user", "content": "a long answer please"}],
        }
    )


def _sized_body(size: int) -> bytes:
    return orjson.dumps(
        {
            "model": "bench",
            "bench_reply_bytes": size,
            "messages": [{"role": "user", "content": "x" * size}],
        }
    )


async def _open_streams(url: str, n: int, body: bytes) -> list[int]:
    """Open n streams at once; return the chunks each received before `[DONE]` (-1: failed)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:

        async def one() -> int:
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        return -1
                    chunks = 0
                    async for line in response.content:
                        if line.startswith(b"data: [DONE]"):
                            return chunks
                        if line.startswith(b"data: "):
                            chunks += 1
                    return -1
            except (aiohttp.ClientError, TimeoutError):
                return -1

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _peak_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_mb(pid))
        time.sleep(0.05)


def streams_study(targets: dict[str, tuple[str, int]], args: argparse.Namespace) -> str:
    body = _stream_body(args.chunks, args.interval_ms)
    lines = [
        f"{args.streams} concurrent streams of {args.chunks} chunks, {args.interval_ms} ms apart",
        "",
        "| target | complete | idle RSS MB | peak RSS MB | KB per open stream "
        "| CPU s | CPU µs per chunk | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (base, pid) in targets.items():
        idle = _rss_mb(pid)
        stop, peak = threading.Event(), [idle]
        watcher = threading.Thread(target=_peak_rss, args=(pid, stop, peak))
        watcher.start()
        cpu0, began = _cpu_seconds(pid), time.perf_counter()
        counts = asyncio.run(_open_streams(base + "/v1/chat/completions", args.streams, body))
        wall = time.perf_counter() - began
        cpu = _cpu_seconds(pid) - cpu0
        stop.set()
        watcher.join()
        complete = sum(1 for c in counts if c == args.chunks)
        chunks = sum(c for c in counts if c > 0)
        per_stream_kb = (peak[0] - idle) * 1024 / args.streams
        per_chunk_us = cpu / chunks * 1e6 if chunks else float("nan")
        lines.append(
            f"| {name} | {complete}/{args.streams} | {idle:.0f} | {peak[0]:.0f} "
            f"| {per_stream_kb:.1f} | {cpu:.2f} | {per_chunk_us:.1f} | {wall:.1f} |"
        )
    return "\n".join(lines)


def sizes_study(targets: dict[str, tuple[str, int | None]], args: argparse.Namespace) -> str:
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    lines = [
        "requests and responses of each size, wrk at concurrency 4",
        "",
        "| size | target | req/s | p50 ms | CPU ms/req | gateway/bare CPU per req |",
        "|---|---|---|---|---|---|",
    ]
    for size in (int(s) for s in args.sizes.split(",")):
        body = _sized_body(size)
        cpu_per: dict[str, float] = {}
        for name, (base, pid) in targets.items():
            cpu0 = _cpu_seconds(pid) if pid else 0.0
            result = run_wrk(base + "/v1/chat/completions", body, headers, 4, args.seconds)
            cpu = _cpu_seconds(pid) - cpu0 if pid else float("nan")
            per = cpu / result.requests * 1000 if result.requests else float("nan")
            cpu_per[name] = per
            ratio = (
                f"{per / cpu_per['bare proxy']:.2f}"
                if name == "gateway" and cpu_per.get("bare proxy")
                else ""
            )
            if result.errors:
                print(f"warning: {name} {size} B: {result.errors} errors", file=sys.stderr)
            lines.append(
                f"| {_size(size)} | {name} | {result.rps:,.0f} | {result.p50_ms:.2f} "
                f"| {per:.3f} | {ratio} |"
            )
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n // 1048576} MB" if n >= 1048576 else f"{n // 1024} KB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--sizes", default="1024,10240,102400,1048576")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", choices=["streams", "sizes"])
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    py = sys.executable
    ports = {name: free_port() for name in ("up", "bare", "gw")}
    pool = str(args.streams + 64)  # every stream holds an upstream connection
    flags = ["--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        stack.enter_context(_spawn([*_pin("0"), py, "-m", "bench.upstream", str(ports["up"])]))
        bare_cmd = [*_pin("1"), py, "-m", "uvicorn", "bench.bare_proxy:app"]
        bare_cmd += ["--port", str(ports["bare"]), "--backlog", "4096", *flags]
        bare_env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{ports['up']}", "BENCH_POOL": pool}
        bare = stack.enter_context(_spawn(bare_cmd, bare_env))
        gw_cmd = [*_pin("1"), py, "-m", "gateway", "serve", "--port", str(ports["gw"])]
        gw_cmd += ["--policy-dir", str(_policy_dir(root, ports["up"])), "--log-level", "warning"]
        gw_env = {
            "SGW_AUDIT_STORE": f"sqlite:{root / 'audit.sqlite3'}",
            "SGW_AUDIT_SIGNING_KEY_FILE": str(root / "key.pem"),
            "SGW_POOL_SIZE_PER_BACKEND": pool,
        }
        gw = stack.enter_context(_spawn(gw_cmd, gw_env))
        wait_http(f"http://127.0.0.1:{ports['gw']}/ready", 30)
        time.sleep(0.5)
        proxies = {
            "bare proxy": (f"http://127.0.0.1:{ports['bare']}", bare.pid),
            "gateway": (f"http://127.0.0.1:{ports['gw']}", gw.pid),
        }
        for base, _ in proxies.values():  # warm up
            asyncio.run(_open_streams(base + "/v1/chat/completions", 4, _stream_body(2, 1)))
        out = [
            f"machine: {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
        ]
        if args.only in (None, "streams"):
            out += ["", streams_study(proxies, args)]
        if args.only in (None, "sizes"):
            targets: dict[str, tuple[str, int | None]] = {
                "direct": (f"http://127.0.0.1:{ports['up']}", None),
                **proxies,
            }
            out += ["", sizes_study(targets, args)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
