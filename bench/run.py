"""Side-by-side benchmark: the same fast upstream called directly, through a bare Python proxy,
and through the gateway with everything that has landed switched on.

    python -m bench.run [--rounds 3] [--seconds 5] [--concurrency 1,16,64] [--quick]

The upstream and the load generator share core 0; the proxy under test runs alone on core 1.
Targets alternate within each round (in reverse order every other round); the first table
reports medians over rounds, the ratios are taken round by round (median and range).
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
from typing import TypeVar

import httpx
import orjson
import yaml

from bench.load import LoadResult, run_load
from bench.wrk import WRK, WRK_CORE, WrkResult, run_wrk
from tests.harness import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-sgw-benchkey1-bench-secret"


def _pin(cores: str) -> list[str]:
    """`taskset` for a child process on a machine with more than one core. The machine's count
    decides, not this process's affinity: the scripts pin themselves to core 0 first."""
    return ["taskset", "-c", cores] if (os.cpu_count() or 1) > 1 else []


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


def quiet(pids: list[int], window_s: float = 0.25, timeout_s: float = 60.0) -> None:
    """Wait until every process in `pids` is idle (under 2% of a core over `window_s`).

    A slow target keeps working on the requests in flight when the load stops (LiteLLM's proxy
    takes seconds to drain 64 streams); on a shared core that work would be charged to whichever
    target is measured next."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = [_cpu_seconds(pid) for pid in pids]
        time.sleep(window_s)
        used = [_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        if max(used, default=0.0) < 0.02 * window_s:
            return


def _cores(pid: int) -> str:
    """The cores a process may run on, as the report shows them."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))


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


LITELLM_BIN = ROOT / ".venv-litellm" / "bin" / "litellm"
LITELLM_KEY = "sk-bench-litellm-master-key-0123456789"


def _litellm_config(root: Path, upstream_port: int) -> Path:
    path = root / "litellm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "bench",
                        "litellm_params": {
                            "model": "openai/bench",
                            "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                            "api_key": "unused",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, short cells")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 1.0, "1,4"
    if args.load == "wrk" and not WRK.exists():
        parser.error(f"{WRK} is missing: run `make .tools/wrk` (or pass --load python)")
    with_litellm = not args.no_litellm
    if with_litellm and not LITELLM_BIN.exists():
        parser.error("LiteLLM's proxy is not installed: `make .venv-litellm/.installed`")
    levels = [int(c) for c in args.concurrency.split(",")]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    py = sys.executable
    ports = {name: free_port() for name in ("up", "bare", "httpx", "litellm", "gw")}
    upstream_env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{ports['up']}"}
    uvicorn_flags = ["--log-level", "warning", "--no-access-log", "--loop", "uvloop"]
    uvicorn_flags += ["--http", "httptools"]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        upstream = stack.enter_context(
            _spawn([*_pin("0"), py, "-m", "bench.upstream", str(ports["up"])])
        )
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, module, port in (
            ("bare proxy", "bench.bare_proxy:app", ports["bare"]),
            ("bare proxy (httpx)", "bench.bare_proxy_httpx:app", ports["httpx"]),
        ):
            cmd = [*_pin("1"), py, "-m", "uvicorn", module, "--port", str(port), *uvicorn_flags]
            procs[name] = stack.enter_context(_spawn(cmd, upstream_env))
        if with_litellm:
            cmd = [
                *_pin("1"),
                str(LITELLM_BIN),
                "--config",
                str(_litellm_config(root, ports["up"])),
            ]
            cmd += ["--port", str(ports["litellm"]), "--num_workers", "1"]
            env = {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": LITELLM_KEY,  # no database: the master key is the only key
            }
            procs["litellm proxy"] = stack.enter_context(_spawn(cmd, env))
        gw_cmd = [*_pin("1"), py, "-m", "gateway", "serve", "--port", str(ports["gw"])]
        gw_cmd += ["--policy-dir", str(_policy_dir(root, ports["up"])), "--log-level", "warning"]
        gw_env = {  # audit on (the default), in this run's directory
            "SGW_AUDIT_STORE": f"sqlite:{root / 'audit.sqlite3'}",
            "SGW_AUDIT_SIGNING_KEY_FILE": str(root / "key.pem"),
        }
        procs["gateway"] = stack.enter_context(_spawn(gw_cmd, gw_env))
        wait_http(f"http://127.0.0.1:{ports['gw']}/ready", 30)
        if with_litellm:
            wait_http(f"http://127.0.0.1:{ports['litellm']}/health/liveliness", 120)
        time.sleep(0.5)
        bases = {
            "direct": ports["up"],
            "bare proxy": ports["bare"],
            "bare proxy (httpx)": ports["httpx"],
            "litellm proxy": ports["litellm"],
            "gateway": ports["gw"],
        }
        targets = {
            name: (f"http://127.0.0.1:{port}", procs[name].pid if name in procs else None)
            for name, port in bases.items()
            if name == "direct" or name in procs
        }
        idle = {name: _rss_mb(pid) for name, (_, pid) in targets.items() if pid}
        cores = {"upstream": _cores(upstream.pid)}
        cores |= {name: _cores(pid) for name, (_, pid) in targets.items() if pid}
        for name, (base, _) in targets.items():  # warm up: first requests are slow everywhere
            key = LITELLM_KEY if name == "litellm proxy" else KEY
            for stream in (False, True):
                httpx.post(
                    base + "/v1/chat/completions",
                    content=_body(stream),
                    headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
                    timeout=60,
                )
        rows: dict[tuple[str, int, str], list[tuple[float, float, float, float, float]]] = {}
        busy = [upstream.pid, *(pid for _, pid in targets.values() if pid)]
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        for round_ in range(args.rounds):
            for mode in ("json", "stream"):
                body = _body(mode == "stream")
                for c in levels:
                    for name, (base, pid) in _alternate(targets, round_):
                        quiet(busy)
                        cpu0 = _cpu_seconds(pid) if pid else 0.0
                        url = base + "/v1/chat/completions"
                        key = LITELLM_KEY if name == "litellm proxy" else KEY
                        headers["authorization"] = f"Bearer {key}"
                        result: WrkResult | LoadResult
                        if args.load == "wrk":
                            result = run_wrk(url, body, headers, c, args.seconds)
                        else:
                            result = asyncio.run(run_load(url, body, headers, c, args.seconds))
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
        names = list(targets)
    print(_report(rows, levels, idle, args, names, cores))
    return 0


T = TypeVar("T")


def _alternate(targets: dict[str, T], round_: int) -> list[tuple[str, T]]:
    """Targets in turn, in reverse order every other round: a machine that speeds up or slows
    down during a round then favours no target."""
    order = list(targets.items())
    return order[::-1] if round_ % 2 else order


def ratios(a: list[float], b: list[float], digits: int = 2) -> str:
    """a / b round by round (both measured minutes apart at most): the median, and the range
    when there are several rounds; '-' when b measured nothing (a cell too short for a slow
    target). The machine's speed drifts between rounds, so ratios of the same round are steadier
    than ratios of medians."""
    each = sorted(x / y for x, y in zip(a, b, strict=True) if y and y == y and x == x)
    if not each:
        return "-"
    text = f"{statistics.median(each):.{digits}f}"
    return text if len(each) == 1 else f"{text} ({each[0]:.{digits}f}-{each[-1]:.{digits}f})"


def _report(rows, levels, idle, args, names, cores) -> str:  # type: ignore[no-untyped-def]
    med = {k: [statistics.median(x[i] for x in v) for i in range(5)] for k, v in rows.items()}
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load: {args.load}; "
        f"{args.rounds} round(s) of {args.seconds:g}s per cell, medians",
        f"cores: wrk {WRK_CORE}, " + ", ".join(f"{k} {v}" for k, v in cores.items()),
        "",
        "| mode | conc. | target | req/s | p50 ms | p99 ms | added p50 ms | CPU ms/req | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for c in levels:
            direct = med[(mode, c, "direct")]
            for name in names:
                rps, p50, p99, cpu, rss = med[(mode, c, name)]
                added = p50 - direct[1] if name != "direct" else 0.0
                lines.append(
                    f"| {mode} | {c} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
                    f"{added:.2f} | {cpu:.3f} | {rss:.0f} |"
                )
    litellm = "litellm proxy" in names
    lines += [
        "",
        "ratios taken round by round: median (lowest-highest)",
        "",
        "| mode | conc. | gateway/direct req/s | gateway/bare req/s | gateway/bare CPU per req "
        "| gateway/LiteLLM req/s | LiteLLM/gateway CPU per req | bare aiohttp/httpx req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for c in levels:
            g, b, d, h = (
                [list(x) for x in zip(*rows[(mode, c, n)], strict=True)]
                for n in ("gateway", "bare proxy", "direct", "bare proxy (httpx)")
            )
            vs_ll = cpu_ll = "-"
            if litellm:
                ll = [list(x) for x in zip(*rows[(mode, c, "litellm proxy")], strict=True)]
                vs_ll, cpu_ll = ratios(g[0], ll[0], 1), ratios(ll[3], g[3], 1)
            lines.append(
                f"| {mode} | {c} | {ratios(g[0], d[0])} | {ratios(g[0], b[0])} "
                f"| {ratios(g[3], b[3])} | {vs_ll} | {cpu_ll} | {ratios(b[0], h[0])} |"
            )
    lines += ["", "idle RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
