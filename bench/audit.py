"""What the audit log costs: the gateway with audit off, on SQLite (WAL, fsync on every commit),
on PostgreSQL, and on a slow PostgreSQL (behind a proxy adding 2 ms each way to every packet),
against the same fast upstream and load, side by side in one run.

Reports requests/s, p50/p99, the gateway's CPU per request, and the writer's group-commit batch
sizes and commit times (from `GET /admin/audit`).

    python -m bench.audit [--rounds 3] [--seconds 3] [--concurrency 1,16,64]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import yaml

from bench.run import (
    KEY,
    _alternate,
    _body,
    _cpu_seconds,
    _pin,
    _policy_dir,
    _spawn,
    quiet,
    ratios,
)
from bench.wrk import run_wrk
from gateway.auth.keys import hash_key
from tests.faults.proxy import FaultProxy, Mode
from tests.harness import free_port, wait_http

ADMIN = "sk-sgw-benchadmin-bench-admin-secret"
SLOW_STORE_DELAY_S = 0.002
SLOW_STORE = "audit postgres +4 ms"  # 2 ms each way on every packet


async def _fresh_schema(dsn: str) -> str:
    schema = "bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{dsn}?search_path={schema}"


async def _drop_schema(dsn: str) -> None:
    base, _, schema = dsn.partition("?search_path=")
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 0.5, "4"
    levels = [int(c) for c in args.concurrency.split(",")]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    py = sys.executable
    up_port = free_port()
    pg = asyncio.run(_fresh_schema(args.postgres))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        policies = _policy_dir(root, up_port)
        keys = policies / "keys.yaml"
        data = yaml.safe_load(keys.read_text())
        data["keys"].append({"id": "benchadmin", "role": "admin", "sha256": hash_key(ADMIN)})
        keys.write_text(yaml.safe_dump(data))
        upstream = stack.enter_context(
            _spawn([*_pin("0"), py, "-m", "bench.upstream", str(up_port)])
        )
        # a slow store: PostgreSQL behind a proxy that holds every packet, each way
        dsn = urlsplit(pg)
        slow = stack.enter_context(FaultProxy(dsn.port or 5432).running())
        slow.mode = Mode("latency", SLOW_STORE_DELAY_S)
        variants = {
            "audit off": {"SGW_AUDIT_ENABLED": "false"},
            "audit sqlite": {"SGW_AUDIT_STORE": f"sqlite:{root / 'audit.sqlite3'}"},
            "audit postgres": {"SGW_AUDIT_STORE": pg},
            SLOW_STORE: {
                "SGW_AUDIT_STORE": urlunsplit(
                    dsn._replace(netloc=f"{dsn.netloc.rpartition('@')[0]}@127.0.0.1:{slow.port}")
                )
            },
        }
        targets = {}
        for name, variant in variants.items():
            port = free_port()
            env = {**variant, "SGW_AUDIT_SIGNING_KEY_FILE": str(root / "key.pem")}
            cmd = [*_pin("1"), py, "-m", "gateway", "serve", "--port", str(port)]
            cmd += ["--policy-dir", str(policies), "--log-level", "warning"]
            proc = stack.enter_context(_spawn(cmd, env))
            wait_http(f"http://127.0.0.1:{port}/ready", 30)
            targets[name] = (f"http://127.0.0.1:{port}", proc.pid)
        time.sleep(0.5)
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        rows: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}
        busy = [upstream.pid, *(pid for _, pid in targets.values())]
        for round_ in range(args.rounds):
            for mode in ("json", "stream"):
                body = _body(mode == "stream")
                for c in levels:
                    for name, (base, pid) in _alternate(targets, round_):
                        quiet(busy)
                        cpu0 = _cpu_seconds(pid)
                        result = run_wrk(
                            base + "/v1/chat/completions", body, headers, c, args.seconds
                        )
                        cpu = _cpu_seconds(pid) - cpu0
                        if result.errors:
                            print(
                                f"warning: {name} {mode} c={c}: {result.errors} errors",
                                file=sys.stderr,
                            )
                        per_req = cpu / result.requests * 1000 if result.requests else float("nan")
                        rows.setdefault((mode, c, name), []).append(
                            (result.rps, result.percentile(50), result.percentile(99), per_req)
                        )
        writers = {
            name: httpx.get(
                base + "/admin/audit", headers={"authorization": f"Bearer {ADMIN}"}
            ).json()
            for name, (base, _) in targets.items()
        }
    asyncio.run(_drop_schema(pg))
    print(
        f"{args.rounds} round(s) of {args.seconds}s per cell, medians; the last column is taken"
        " round by round: median (lowest-highest)\n"
    )
    print("| mode | conc. | target | req/s | p50 ms | p99 ms | CPU ms/req | req/s vs audit off |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("json", "stream"):
        for c in levels:
            off = [r[0] for r in rows[(mode, c, "audit off")]]
            for name in variants:
                rps, p50, p99, cpu = (
                    statistics.median(x) for x in zip(*rows[(mode, c, name)], strict=True)
                )
                print(
                    f"| {mode} | {c} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.3f} |"
                    f" {ratios([r[0] for r in rows[(mode, c, name)]], off)} |"
                )
    print(
        "\n| target | records | batches | mean batch | p99 batch | max batch | commit p50 ms | commit p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, w in writers.items():
        if not w.get("enabled"):
            continue
        b, cm = w["batch_size"], w["commit_ms"]
        print(
            f"| {name} | {w['records']:,} | {w['batches']:,} | {b['mean']:.1f} | {b['p99']} |"
            f" {b['max']} | {cm['p50']:.2f} | {cm['p99']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
