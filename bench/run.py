"""Side-by-side benchmark: the same fast upstream called directly, through a bare Python proxy,
LiteLLM's proxy, Portkey's gateway, and the gateway with everything that has landed switched on;
then the gateway with a requests-per-minute limit counted in memory and in Redis, and under
`serve --workers 1` and `--workers 2`.

    python -m bench.run [--rounds 3] [--seconds 5] [--extra-seconds 2] [--concurrency 1,16,64]
                        [--quick] [--no-litellm] [--no-portkey]

The upstream and the load generator share core 0; the proxy under test runs alone on core 1,
except the two-worker gateway, whose workers may run on both cores (beside wrk and the upstream).
Targets alternate within each round (in reverse order every other round); the first table
reports medians over rounds, the ratios are taken round by round (median and range). A cell in
which a target answered any error shows the errors (how many, the first), never a rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
LIMITED_KEY = "sk-sgw-benchkey2-bench-secret"  # the tenant with a requests-per-minute limit
RPM = 1_000_000_000  # high enough never to refuse: every request is counted, none refused
REDIS_URL = "redis://127.0.0.1:6379/0"
PORTKEY = ROOT / ".tools" / "portkey" / "node_modules" / "@portkey-ai" / "gateway"


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
    limited = yaml.safe_load((d / "tenants" / "bench.yaml").read_text())
    limited |= {"tenant": "bench-limited", "limits": {"requests_per_minute": RPM}}
    (d / "tenants" / "bench-limited.yaml").write_text(yaml.safe_dump(limited))
    keys = [
        {"id": "benchkey1", "tenant": "bench", "sha256": hash_key(KEY)},
        {"id": "benchkey2", "tenant": "bench-limited", "sha256": hash_key(LIMITED_KEY)},
    ]
    (d / "keys.yaml").write_text(yaml.safe_dump({"keys": keys}))
    return d


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the workers of `serve --workers N`)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += _tree(int(child))
    return found


def _cpu_seconds(pid: int) -> float:
    """User and system time of the process and its descendants."""
    total = 0.0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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
    """The cores a process (and so its workers) may run on, as the report shows them."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))


def _rss_mb(pid: int) -> float:
    """Resident memory of the process and its descendants (a supervisor and its workers)."""
    total = 0.0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total or float("nan")


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


@dataclass
class Target:
    """What wrk loads: `pid` is the process measured (None: the upstream itself)."""

    base: str
    pid: int | None
    key: str = KEY
    headers: dict[str, str] = field(default_factory=dict)
    extra: bool = False  # a cell of its own length (--extra-seconds)


def _portkey_headers(upstream_port: int) -> dict[str, str]:
    """Portkey routes by headers: the provider's request shape, and where to send it."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
    }


def _warm(name: str, target: Target) -> None:
    """First requests are slow everywhere; a stream that does not end whole is said at once."""
    for stream in (False, True, False, True):
        r = httpx.post(
            target.base + "/v1/chat/completions",
            content=_body(stream),
            headers=_headers(target),
            timeout=60,
        )
        whole = r.status_code == 200 and (not stream or r.content.endswith(b"data: [DONE]\n\n"))
        if not whole:
            print(
                f"warning: {name} {'stream' if stream else 'json'} warm-up: {r.status_code}"
                f" {r.text[:160]!r}",
                file=sys.stderr,
            )


def _headers(target: Target) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "authorization": f"Bearer {target.key}",
        **target.headers,
    }


Row = tuple[float, float, float, float, float, int, str]  # rps, p50, p99, CPU, RSS, errors, first


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--extra-seconds",
        type=float,
        default=2.0,
        help="cell length of Portkey and the gateway's limits and workers variants",
    )
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--no-portkey", action="store_true", help="leave Portkey's gateway out")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, short cells")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.extra_seconds, args.concurrency = 1, 1.0, 1.0, "1,4"
    if args.load == "wrk" and not WRK.exists():
        parser.error(f"{WRK} is missing: run `make .tools/wrk` (or pass --load python)")
    with_litellm = not args.no_litellm
    if with_litellm and not LITELLM_BIN.exists():
        parser.error("LiteLLM's proxy is not installed: `make .venv-litellm/.installed`")
    with_portkey = not args.no_portkey
    node = shutil.which("node")
    if with_portkey and not (node and (PORTKEY / "build" / "start-server.js").exists()):
        parser.error("Portkey's gateway is not installed: `make .tools/portkey/.installed`")
    levels = [int(c) for c in args.concurrency.split(",")]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    py = sys.executable
    names = ("up", "bare", "httpx", "litellm", "portkey", "gw", "redis", "w1", "w2")
    ports = {name: free_port() for name in names}
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
        if with_portkey:
            assert node is not None
            cmd = [*_pin("1"), node, str(PORTKEY / "build" / "start-server.js")]
            cmd += [f"--port={ports['portkey']}", "--headless"]
            procs["portkey gateway"] = stack.enter_context(_spawn(cmd, {"NODE_ENV": "production"}))
        policy_dir = str(_policy_dir(root, ports["up"]))
        redis_prefix = f"sgw-bench:{os.urandom(6).hex()}:"
        gateways: tuple[tuple[str, str, str, list[str], dict[str, str]], ...] = (
            # name, port, cores, serve's options, settings
            ("gateway", "gw", "1", [], {}),
            (
                "gateway + rpm (redis)",
                "redis",
                "1",
                [],
                {"SGW_LIMITS_STORE": REDIS_URL, "SGW_LIMITS_KEY_PREFIX": redis_prefix},
            ),
            ("gateway --workers 1", "w1", "1", ["--workers", "1"], {}),
            ("gateway --workers 2", "w2", "0,1", ["--workers", "2"], {}),
        )
        for name, port_name, pinned, options, settings in gateways:
            cmd = [*_pin(pinned), py, "-m", "gateway", "serve", "--port", str(ports[port_name])]
            cmd += ["--policy-dir", policy_dir, "--log-level", "warning", *options]
            env = {  # audit on (the default), in this run's directory, a file per process
                "SGW_AUDIT_STORE": f"sqlite:{root / f'audit-{port_name}.sqlite3'}",
                "SGW_AUDIT_SIGNING_KEY_FILE": str(root / "key.pem"),
                **settings,
            }
            procs[name] = stack.enter_context(_spawn(cmd, env))
            wait_http(f"http://127.0.0.1:{ports[port_name]}/ready", 60)  # one at a time: the key
        if with_litellm:
            wait_http(f"http://127.0.0.1:{ports['litellm']}/health/liveliness", 120)
        if with_portkey:
            wait_http(f"http://127.0.0.1:{ports['portkey']}/", 60)
        time.sleep(0.5)

        def local(port_name: str) -> str:
            return f"http://127.0.0.1:{ports[port_name]}"

        def pid(name: str) -> int:
            return procs[name].pid

        targets = {"direct": Target(local("up"), None)}
        targets["bare proxy"] = Target(local("bare"), pid("bare proxy"))
        targets["bare proxy (httpx)"] = Target(local("httpx"), pid("bare proxy (httpx)"))
        if with_litellm:
            targets["litellm proxy"] = Target(local("litellm"), pid("litellm proxy"), LITELLM_KEY)
        if with_portkey:
            targets["portkey gateway"] = Target(
                local("portkey"),
                pid("portkey gateway"),
                "unused",
                _portkey_headers(ports["up"]),
                extra=True,
            )
        targets["gateway"] = Target(local("gw"), pid("gateway"))
        # the same process as `gateway`, for the tenant whose requests are counted
        targets["gateway + rpm (memory)"] = Target(
            local("gw"), pid("gateway"), LIMITED_KEY, extra=True
        )
        targets["gateway + rpm (redis)"] = Target(
            local("redis"), pid("gateway + rpm (redis)"), LIMITED_KEY, extra=True
        )
        for n, p in (("gateway --workers 1", "w1"), ("gateway --workers 2", "w2")):
            targets[n] = Target(local(p), pid(n), extra=True)
        idle = {name: _rss_mb(t.pid) for name, t in targets.items() if t.pid}
        cores = {"upstream": _cores(upstream.pid)}
        cores |= {name: _cores(t.pid) for name, t in targets.items() if t.pid}
        for name, target in targets.items():
            _warm(name, target)
        rows: dict[tuple[str, int, str], list[Row]] = {}
        processes = [upstream.pid, *(p.pid for p in procs.values())]
        for round_ in range(args.rounds):
            for mode in ("json", "stream"):
                body = _body(mode == "stream")
                for c in levels:
                    for name, target in _alternate(targets, round_):
                        quiet([one for p in processes for one in _tree(p)])
                        rows.setdefault((mode, c, name), []).append(
                            _cell(name, mode, target, body, c, args)
                        )
        order = list(targets)
    print(_report(rows, levels, idle, args, order, cores))
    return 0


def _cell(
    name: str, mode: str, target: Target, body: bytes, c: int, args: argparse.Namespace
) -> Row:
    """One cell: load for its length; the rate, latencies and CPU, or the errors."""
    cpu0 = _cpu_seconds(target.pid) if target.pid else 0.0
    url = target.base + "/v1/chat/completions"
    seconds = args.extra_seconds if target.extra else args.seconds
    result: WrkResult | LoadResult
    if args.load == "wrk":
        keep = target.pid is not None  # the upstream never fails; spare it the Lua hook
        result = run_wrk(url, body, _headers(target), c, seconds, keep_first_error=keep)
    else:
        result = asyncio.run(run_load(url, body, _headers(target), c, seconds))
    cpu = (_cpu_seconds(target.pid) - cpu0) if target.pid else float("nan")
    rss = _rss_mb(target.pid) if target.pid else float("nan")
    per_req = cpu / result.requests * 1000 if result.requests else float("nan")
    if result.errors:
        print(
            f"warning: {name} {mode} c={c}: {result.errors} errors: {result.first_error}",
            file=sys.stderr,
        )
        nan = float("nan")  # a failing cell has no rate
        return (nan, nan, nan, nan, rss, result.errors, result.first_error)
    return (result.rps, result.percentile(50), result.percentile(99), per_req, rss, 0, "")


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


def _column(cells: list[Row], index: int) -> list[float]:
    return [float(cell[index]) for cell in cells]


def differences(a: list[float], b: list[float]) -> str:
    """a - b round by round: the median, and the range when there are several rounds."""
    each = sorted(x - y for x, y in zip(a, b, strict=True) if x == x and y == y)
    if not each:
        return "-"
    text = f"{statistics.median(each):+.2f}"
    return text if len(each) == 1 else f"{text} ({each[0]:+.2f} to {each[-1]:+.2f})"


def _errors(cells: list[Row]) -> str:
    count = sum(cell[5] for cell in cells)
    if not count:
        return "0"
    first = next(cell[6] for cell in cells if cell[5]).replace("|", "/")
    return f"{count}: {first}"


def _report(rows, levels, idle, args, names, cores) -> str:  # type: ignore[no-untyped-def]
    med = {k: [statistics.median(x[i] for x in v) for i in range(5)] for k, v in rows.items()}
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load: {args.load}; "
        f"{args.rounds} round(s) of {args.seconds:g}s per cell "
        f"({args.extra_seconds:g}s for Portkey and the gateway's variants), medians",
        f"cores: wrk {WRK_CORE}, " + ", ".join(f"{k} {v}" for k, v in cores.items()),
        "",
        "| mode | conc. | target | req/s | p50 ms | p99 ms | added p50 ms | CPU ms/req | RSS MB "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for c in levels:
            direct = med[(mode, c, "direct")]
            for name in names:
                rps, p50, p99, cpu, rss = med[(mode, c, name)]
                errors = _errors(rows[(mode, c, name)])
                if errors != "0":  # never a rate for a cell with errors
                    lines.append(
                        f"| {mode} | {c} | {name} | - | - | - | - | - | {rss:.0f} | {errors} |"
                    )
                    continue
                added = p50 - direct[1] if name != "direct" else 0.0
                lines.append(
                    f"| {mode} | {c} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
                    f"{added:.2f} | {cpu:.3f} | {rss:.0f} | 0 |"
                )

    def of(mode: str, c: int, name: str, index: int) -> list[float]:
        if name not in names:
            return [float("nan")] * args.rounds
        return _column(rows[(mode, c, name)], index)

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
            g, b, d, h, ll = (
                (of(mode, c, n, 0), of(mode, c, n, 3))
                for n in ("gateway", "bare proxy", "direct", "bare proxy (httpx)", "litellm proxy")
            )
            lines.append(
                f"| {mode} | {c} | {ratios(g[0], d[0])} | {ratios(g[0], b[0])} "
                f"| {ratios(g[1], b[1])} | {ratios(g[0], ll[0], 1)} | {ratios(ll[1], g[1], 1)} "
                f"| {ratios(b[0], h[0])} |"
            )
    lines += [
        "",
        "| mode | conc. | Redis/memory rpm req/s | Redis/memory rpm CPU per req "
        "| Redis - memory rpm p50 ms | 2 workers/1 worker req/s | gateway/Portkey req/s "
        "| Portkey/gateway CPU per req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    memory, redis = "gateway + rpm (memory)", "gateway + rpm (redis)"
    for mode in ("json", "stream"):
        for c in levels:
            gw, pk = (of(mode, c, n, 0) for n in ("gateway", "portkey gateway"))
            gw_cpu, pk_cpu = (of(mode, c, n, 3) for n in ("gateway", "portkey gateway"))
            one, two = (of(mode, c, f"gateway --workers {n}", 0) for n in (1, 2))
            lines.append(
                f"| {mode} | {c} | {ratios(of(mode, c, redis, 0), of(mode, c, memory, 0))} "
                f"| {ratios(of(mode, c, redis, 3), of(mode, c, memory, 3))} "
                f"| {differences(of(mode, c, redis, 1), of(mode, c, memory, 1))} "
                f"| {ratios(two, one)} | {ratios(gw, pk, 1)} | {ratios(pk_cpu, gw_cpu, 1)} |"
            )
    lines += ["", "idle RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
