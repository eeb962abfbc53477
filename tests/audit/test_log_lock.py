"""One writer per audit log: a second process asking for a log id in use refuses to start, and a
replica that restarts with its id continues its log."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from gateway.audit.setup import open_store
from gateway.audit.store import LogTaken, StoredRecord, StoreUnavailable
from gateway.audit.store_postgres import WRITER_NAME
from gateway.dev.demo import demo_key
from tests.audit.conftest import ADMIN_DSN, _schema
from tests.harness import (
    Gateway,
    PolicyDir,
    free_port,
    run_gateway,
    run_simulators,
    sovereign_gateway,
)


def chat(gw: Gateway) -> None:
    answer = httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
        json={"model": "mistral-small", "messages": [{"role": "user", "content": "audit me"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def serve_once(policy_dir: Path, **settings: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"SGW_{k.upper()}": str(v) for k, v in settings.items()}}
    port = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", port, "--policy-dir", str(policy_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_writer_of_a_log_refuses_to_start_and_a_restart_continues_it(
    store_url: str, tmp_path: Path
) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    settings = {
        "audit_store": store_url,
        "audit_signing_key_file": tmp_path / "signing-key.pem",
        "audit_log_id": "edge-1",
        "audit_checkpoint_interval_s": 0.3,
        "log_level": "warning",
    }
    with run_simulators(policies.path, tmp_path / "sim.log"):
        with run_gateway(policies.path, tmp_path / "first.log", **settings) as first:
            chat(first)
            second = serve_once(policies.path, **settings)
            chat(first)  # the first one goes on
        output = second.stdout + second.stderr
        assert second.returncode == 2, output
        assert "audit log 'edge-1' is being written by another process" in output
        assert store_url.rsplit("@", maxsplit=1)[-1] in output  # the store, without a role
        assert "Traceback" not in output
        with run_gateway(policies.path, tmp_path / "again.log", **settings) as again:
            chat(again)

    export = tmp_path / "edge-1.jsonl"
    done = sovereign_gateway("audit", "export", "--store", store_url, "--out", export)
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in export.read_text().splitlines()]
    seqs = [r["record"]["seq"] for r in lines if r["type"] == "record"]
    assert {r["record"]["log_id"] for r in lines if r["type"] == "record"} == {"edge-1"}
    assert len(seqs) >= 3 and seqs == list(range(len(seqs)))  # one log, no gap, no fork
    key = tmp_path / "pub.pem"
    public = sovereign_gateway("audit", "public-key", "--signing-key", tmp_path / "signing-key.pem")
    key.write_text(public.stdout)
    verified = sovereign_gateway("audit", "verify", export, "--public-key", key)
    assert verified.returncode == 0, verified.stdout


def test_a_writer_that_loses_its_postgres_lock_writes_nothing_until_it_has_it_again(
    postgres: str,
) -> None:
    schema = "t_" + secrets.token_hex(4)
    asyncio.run(_schema(postgres, schema))
    url = f"{postgres}?search_path={schema}"

    def row(seq: int) -> StoredRecord:
        return StoredRecord("edge-1", seq, "2026-01-01T00:00:00Z", "t", bytes(32), b"{}")

    async def run() -> None:
        first = open_store(url, "edge-1")
        await first.open()
        await first.append_batch([row(0)])
        with pytest.raises(LogTaken):
            await open_store(url, "edge-1").open()
        # its session ends (a cut connection, a restarted server): the lock goes with it
        conn = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
            " AND datname = $2",
            WRITER_NAME,
            postgres.rsplit("/", 1)[-1],
        )
        await conn.close()
        second = open_store(url, "edge-1")
        await second.open()  # another process took the log meanwhile
        with pytest.raises(StoreUnavailable):
            await first.append_batch([row(1)])
        with pytest.raises(StoreUnavailable, match="another process holds audit log 'edge-1'"):
            await first.append_batch([row(1)])
        await second.aclose()
        await first.append_batch([row(1)])  # it has the lock again
        assert await first.size("edge-1") == 2
        await first.aclose()

    asyncio.run(run())
