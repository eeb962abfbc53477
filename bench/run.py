"""Side-by-side benchmark: the same fast upstream called directly, through a bare Python proxy,
and through the gateway with everything that has landed switched on.

    python -m bench.run [--rounds 3] [--seconds 5] [--concurrency 1,16,64] [--quick]

The upstream and the load generator share core 0; the proxy under test runs alone on core 1.
Targets alternate within each round; the table reports medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import yaml

from bench.load import run_load
from tests.harness import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-sgw-benchkey1-bench-secret"
TARGETS = ("direct", "bare proxy", "bare proxy (httpx)", "gateway")


def _pin(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if len(os.sched_getaffinity(0)) > 1 else []


@contextlib.contextmanager
def _spawn(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _policy_dir(root: Path, upstream_port: int) -> Path:
    from gateway.auth.keys import hash_key

    d = root / "policies"
    (d / "tenants").mkdir(parents=True)
    (d / "groups.yaml").write_text(yaml.safe_dump({"groups": {"EU": {"countries": ["FR", "DE"]}}}))
    (d / "catalog.yaml").write_text(
        yaml.safe_dump(
            {
                "backends": {
                    "bench": {
                        "kind": "vllm",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "country": "FR",
                        "self_hosted": True,
                        "operator": {"name": "Bench", "jurisdiction": "FR"},
                    }
                },
                "models": {
                    "bench": {"developer": "Bench", "developer_country": "FR", "open_weights": True}
                },
                "deployments": [{"model": "bench", "backend": "bench", "upstream_model": "bench"}],
            }
        )
    )
    (d / "tenants" / "bench.yaml").write_text(
        yaml.safe_dump(
            {
                "tenant": "bench",
                "models": ["bench"],
                "rules": {
                    "inference_country": {"allow": ["EU"]},
                    "operator_control": {"deny": ["US"]},
                    "open_weights": True,
                    "self_hosted": True,
                },
            }
        )
    )
    (d / "keys.yaml").write_text(
        yaml.safe_dump({"keys": [{"id": "benchkey1", "tenant": "bench", "sha256": hash_key(KEY)}]})
    )
    return d


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _body(stream: bool) -> bytes:
    return orjson.dumps(
        {
            "model": "bench",
            "stream": stream,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "benchmark"}],
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, 1 second")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 0.5, "1,4"
    levels = [int(c) for c in args.concurrency.split(",")]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    py = sys.executable
    up_port, bare_port, httpx_port, gw_port = free_port(), free_port(), free_port(), free_port()
    upstream_env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{up_port}"}
    uvicorn_flags = [
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _spawn([*_pin("0"), py, "-m", "bench.upstream", str(up_port)]),
        _spawn(
            [
                *_pin("1"),
                py,
                "-m",
                "uvicorn",
                "bench.bare_proxy:app",
                "--port",
                str(bare_port),
                *uvicorn_flags,
            ],
            upstream_env,
        ) as bare,
        _spawn(
            [
                *_pin("1"),
                py,
                "-m",
                "uvicorn",
                "bench.bare_proxy_httpx:app",
                "--port",
                str(httpx_port),
                *uvicorn_flags,
            ],
            upstream_env,
        ) as bare_httpx,
        _spawn(
            [
                *_pin("1"),
                py,
                "-m",
                "gateway",
                "serve",
                "--port",
                str(gw_port),
                "--policy-dir",
                str(_policy_dir(Path(tmp), up_port)),
                "--log-level",
                "warning",
            ],
            {  # audit on (the default), in this run's directory
                "SGW_AUDIT_STORE": f"sqlite:{Path(tmp) / 'audit.sqlite3'}",
                "SGW_AUDIT_SIGNING_KEY_FILE": str(Path(tmp) / "key.pem"),
            },
        ) as gw,
    ):
        wait_http(f"http://127.0.0.1:{gw_port}/ready", 30)
        time.sleep(0.5)
        targets = {
            "direct": (f"http://127.0.0.1:{up_port}", None),
            "bare proxy": (f"http://127.0.0.1:{bare_port}", bare.pid),
            "bare proxy (httpx)": (f"http://127.0.0.1:{httpx_port}", bare_httpx.pid),
            "gateway": (f"http://127.0.0.1:{gw_port}", gw.pid),
        }
        idle = {name: _rss_mb(pid) for name, (_, pid) in targets.items() if pid}
        rows: dict[tuple[str, int, str], list[tuple[float, float, float, float, float]]] = {}
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        for _ in range(args.rounds):
            for mode in ("json", "stream"):
                body = _body(mode == "stream")
                for c in levels:
                    for name, (base, pid) in targets.items():
                        cpu0 = _cpu_seconds(pid) if pid else 0.0
                        result = asyncio.run(
                            run_load(base + "/v1/chat/completions", body, headers, c, args.seconds)
                        )
                        cpu = (_cpu_seconds(pid) - cpu0) if pid else float("nan")
                        rss = _rss_mb(pid) if pid else float("nan")
                        per_req = cpu / result.requests * 1000 if result.requests else float("nan")
                        if result.errors:
                            print(
                                f"warning: {name} {mode} c={c}: {result.errors} errors",
                                file=sys.stderr,
                            )
                        rows.setdefault((mode, c, name), []).append(
                            (result.rps, result.percentile(50), result.percentile(99), per_req, rss)
                        )
    print(_report(rows, levels, idle, args))
    return 0


def _report(rows, levels, idle, args) -> str:  # type: ignore[no-untyped-def]
    med = {k: [statistics.median(x[i] for x in v) for i in range(5)] for k, v in rows.items()}
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.rounds} round(s) of {args.seconds:g}s per cell, medians",
        "",
        "| mode | conc. | target | req/s | p50 ms | p99 ms | added p50 ms | CPU ms/req | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for c in levels:
            direct = med[(mode, c, "direct")]
            for name in TARGETS:
                rps, p50, p99, cpu, rss = med[(mode, c, name)]
                added = p50 - direct[1] if name != "direct" else 0.0
                lines.append(
                    f"| {mode} | {c} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
                    f"{added:.2f} | {cpu:.3f} | {rss:.0f} |"
                )
    lines += [
        "",
        "| mode | conc. | gateway/direct req/s | gateway/bare req/s | gateway/bare CPU per req "
        "| bare aiohttp/httpx req/s |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for c in levels:
            g, b, d, h = (
                med[(mode, c, n)] for n in ("gateway", "bare proxy", "direct", "bare proxy (httpx)")
            )
            lines.append(
                f"| {mode} | {c} | {g[0] / d[0]:.2f} | {g[0] / b[0]:.2f} | {g[3] / b[3]:.2f} "
                f"| {b[0] / h[0]:.2f} |"
            )
    lines += ["", "idle RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
