"""`serve --workers 2`: two gateway processes on one port, each writing its own audit log."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from gateway.dev.demo import demo_key
from tests.harness import (
    PolicyDir,
    free_port,
    process,
    run_simulators,
    sovereign_gateway,
    wait_http,
)


def test_two_workers_answer_on_one_port_and_each_log_verifies(tmp_path: Path) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    store = f"sqlite:{tmp_path / 'audit.sqlite3'}"
    key_file = tmp_path / "signing-key.pem"
    env = {
        "SGW_AUDIT_STORE": store,
        "SGW_AUDIT_SIGNING_KEY_FILE": str(key_file),
        "SGW_AUDIT_LOG_ID": "fleet",
        "SGW_AUDIT_CHECKPOINT_INTERVAL_S": "0.3",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port)]
    cmd += ["--policy-dir", str(policies.path)]
    log = tmp_path / "gw.log"

    def chat(_: int) -> int:
        with httpx.Client(timeout=30) as client:  # a connection of its own each time
            return client.post(
                base + "/v1/chat/completions",
                headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
                json={"model": "mistral-small", "messages": [{"role": "user", "content": "hi"}]},
            ).status_code

    with run_simulators(policies.path, tmp_path / "sim.log"), process(cmd, env, log) as gw:
        wait_http(base + "/ready", 90.0, gw)  # a worker accepts only once it is ready
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(chat, range(48)))
        assert statuses == [200] * 48
    assert "memory" in log.read_text() and "each worker counts" in log.read_text()

    public = sovereign_gateway("audit", "public-key", "--signing-key", key_file)
    (tmp_path / "pub.pem").write_text(public.stdout)
    served = 0
    for log_id in ("fleet-w0", "fleet-w1"):
        export = tmp_path / f"{log_id}.jsonl"
        done = sovereign_gateway(
            "audit", "export", "--store", store, "--log-id", log_id, "--out", export
        )
        assert done.returncode == 0, done.stderr
        lines = [orjson.loads(line) for line in export.read_text().splitlines()]
        records = [r["record"] for r in lines if r["type"] == "record"]
        assert records, f"{log_id} has no records"
        served += len(records)
        verified = sovereign_gateway(
            "audit", "verify", export, "--public-key", tmp_path / "pub.pem"
        )
        assert verified.returncode == 0, verified.stdout
    assert served == 48
