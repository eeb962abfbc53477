"""How quickly the console's records page answers with a million records in the store.

`python -m bench.console --store sqlite|postgres [--records 1000000]` fills a store once (kept in
`var/bench/console.sqlite3`, or the schema `sgw_console_bench` of the PostgreSQL database given by
`--dsn`, and reused while it holds that many records), starts `sovereign-gateway serve` on it, signs
in to the console as an auditor, and times `GET /console/records` end to end (HTTP, query, page
rendering) for a set of filters, each `--repeat` times. Results are in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.console_data import fill
from gateway.audit.setup import open_store
from gateway.audit.signing import Signer, generate_private_key_pem, load_private_key
from tests.harness import ROOT, free_port, process, wait_http

AUDITOR_KEY = "sk-sgw-demoauditor-demo-key-not-a-secret"
LOG_ID = "bench"
SCHEMA = "sgw_console_bench"
CASES = [
    ("newest page, no filter", ""),
    ("one tenant", "tenant=tenant-07"),
    ("one tenant, two days", "tenant=tenant-07&since={d2}&until={d1}"),
    ("refused", "decision=refused"),
    ("refused by a rule", "rule=operator_control"),
    ("server errors (1%)", "status=5xx"),
    ("US in the control chain", "jurisdiction=US"),
    ("inference in NL", "country=NL"),
    ("tenant + refused + rule", "tenant=tenant-07&decision=refused&rule=inference_country"),
    ("matches nothing", "model=no-such-model"),
    ("a page half-way back", "before={middle}"),
]


async def _ensure(url: str, count: int) -> None:
    if url.startswith("postgresql://"):
        base = url.split("?", maxsplit=1)[0]
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        finally:
            await conn.close()
    store = open_store(url)
    await store.open()
    try:
        if await store.size(LOG_ID) == count:
            return
        if await store.size(LOG_ID):
            sys.exit(f"{url} holds another number of records in log {LOG_ID!r}; remove it first")
        print(f"filling {url} with {count:,} records (minutes)...", flush=True)
        began = time.monotonic()
        await fill(store, LOG_ID, count, Signer(load_private_key(generate_private_key_pem())))
        print(f"filled in {time.monotonic() - began:.0f} s", flush=True)
    finally:
        await store.aclose()


def _sign_in(client: httpx.Client) -> None:
    form = client.get("/console/sign-in")
    token = form.text.split('name="token" value="')[1].split('"')[0]
    r = client.post("/console/sign-in", data={"api_key": AUDITOR_KEY, "token": token})
    assert r.status_code == 303, r.text


def _measure(base: str, repeat: int, count: int) -> list[tuple[str, float, float, int]]:
    day = 86_400
    now = time.time()
    d1 = time.strftime("%Y-%m-%d", time.gmtime(now - 3 * day))
    d2 = time.strftime("%Y-%m-%d", time.gmtime(now - 4 * day))
    middle = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now - 15 * day))
    results = []
    with httpx.Client(base_url=base, timeout=30) as client:
        _sign_in(client)
        for label, template in CASES:
            query = template.format(d1=d1, d2=d2, middle=f"{middle}~{count}~{LOG_ID}")
            times = []
            rows = 0
            for _ in range(repeat):
                began = time.perf_counter()
                r = client.get(f"/console/records?{query}")
                times.append((time.perf_counter() - began) * 1000)
                assert r.status_code == 200, r.text[:300]
                rows = r.text.count('">Details</a>')
            results.append((label, statistics.median(times), max(times), rows))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if args.store == "sqlite":
        name = "console.sqlite3" if args.records == 1_000_000 else f"console-{args.records}.sqlite3"
        url = f"sqlite:{ROOT / 'var' / 'bench' / name}"
    else:
        url = f"{args.dsn}?search_path={SCHEMA}"
    asyncio.run(_ensure(url, args.records))
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "SGW_AUDIT_STORE": url,
            "SGW_AUDIT_LOG_ID": "bench-gateway",
            "SGW_AUDIT_SIGNING_KEY_FILE": str(Path(tmp) / "key.pem"),
            "SGW_HEALTH_PROBE_INTERVAL_S": "0",
            "SGW_VLLM_METRICS_INTERVAL_S": "0",
            "SGW_LOG_LEVEL": "warning",
        }
        cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
        cmd += ["--policy-dir", str(ROOT / "policies")]
        with process(cmd, env=env, log=Path(tmp) / "gateway.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/ready", 600, proc)
            results = _measure(f"http://127.0.0.1:{port}", args.repeat, args.records)
    print(f"\n{args.store}, {args.records:,} records, {args.repeat} requests per filter")
    print("\n| filter | median ms | max ms | rows |\n|---|---|---|---|")
    for label, median, worst, rows in results:
        print(f"| {label} | {median:.0f} | {worst:.0f} | {rows} |")
    slow = [label for label, median, *_ in results if median >= 300]
    print(f"\n{'all under 300 ms' if not slow else 'over 300 ms: ' + ', '.join(slow)}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
