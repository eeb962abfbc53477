"""Three gateway replicas, each a process with its own audit log id, writing to one PostgreSQL
audit store and sharing limits through Redis, under JSON and streaming load; each is killed once
with `kill -9`, at different times, and started again with its log id on its port.

The promise: every request a client got an answer for is in exactly one replica's log, once (a
stream's `admitted` and `completed` records once each, in one log), with the outcome the client
saw; every log continues where it stopped (no new log id, no gap) and `sovereign-gateway audit
verify` passes for each, on an export made with `audit export` as an operator would.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.query import requests_of
from tests.harness import (
    Gateway,
    PolicyDir,
    Sim,
    free_port,
    process,
    run_simulators,
    wait_http,
)
from tests.harness import sovereign_gateway as cli
from tests.limits.stores import REDIS_URL, random_prefix
from tests.reliability.drive import Figures, Load, Seen, check, records_by_log

pytestmark = pytest.mark.reliability

REPLICAS = 3
KILL_AT_S = (2.0, 6.0, 10.0)  # seconds into the load; each replica once, in turn
AFTER_LAST_S = 3.0  # load kept on after the last replica is back


@dataclass
class Replica:
    log_id: str
    port: int
    settings: dict[str, Any]
    policy_dir: Path
    logs: Path
    gateway: Gateway | None = None
    starts: int = 0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> Gateway:
        self.starts += 1
        log = self.logs / f"{self.log_id}-{self.starts}.log"
        env = {f"SGW_{k.upper()}": str(v) for k, v in self.settings.items()}
        cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)]
        cmd += ["--policy-dir", str(self.policy_dir)]
        proc = self._stack.enter_context(process(cmd, env=env, log=log))
        self.gateway = Gateway(f"http://127.0.0.1:{self.port}", proc, log)
        wait_http(self.gateway.base + "/ready", 90.0, proc)
        return self.gateway

    def kill_9(self) -> None:
        assert self.gateway is not None
        self.gateway.proc.send_signal(signal.SIGKILL)
        self.gateway.proc.wait()
        self._stack.close()
        self._stack = contextlib.ExitStack()

    def stop(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def replicas(policy_dir: Path, logs: Path, store: str, key_file: Path) -> Iterator[list[Replica]]:
    shared = {
        "audit_store": store,
        "audit_signing_key_file": key_file,
        "audit_checkpoint_interval_s": 1.0,
        "limits_store": REDIS_URL,
        "limits_key_prefix": random_prefix(),
        "limits_timeout_s": 2.0,  # a loaded two-core machine
        "log_level": "warning",
        "health_probe_interval_s": 0,
    }
    fleet = [
        Replica(
            f"replica-{i}",
            free_port(),
            {**shared, "audit_log_id": f"replica-{i}"},
            policy_dir,
            logs,
        )
        for i in range(REPLICAS)
    ]
    try:
        for replica in fleet:
            replica.start()
        yield fleet
    finally:
        for replica in fleet:
            replica.stop()


def delivered(s: Seen) -> bool:
    """The client got its whole answer: a status and a request id, and for a 200 stream its end."""
    if not s.request_id or s.status == 0:
        return False
    return s.status != 200 or not s.stream or s.done


def placement(
    answered_by: dict[str, list[Seen]], logs: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], list[str]]:
    """(answered requests that are not in exactly one log, the log of the replica that answered,
    records stored more than once)."""
    where: dict[str, set[str]] = {}
    copies: Counter[tuple[str, str]] = Counter()
    for log_id, records in logs.items():
        for r in records:
            if r.get("request_id"):
                where.setdefault(r["request_id"], set()).add(log_id)
                copies[(r["request_id"], str(r.get("kind", "request")))] += 1
    misplaced = [
        f"{s.request_id} answered by {log_id}, in {sorted(where.get(s.request_id, ()))}"
        for log_id, seen in answered_by.items()
        for s in seen
        if delivered(s) and where.get(s.request_id) != {log_id}
    ]
    repeated = [f"{rid} {kind} x{n}" for (rid, kind), n in copies.items() if n > 1]
    return misplaced, repeated


def verify_each(store: str, logs: list[str], key_file: Path, out: Path) -> dict[str, str]:
    """`audit export --log-id` then `audit verify`, per log: the verdict line of each."""
    public = out / "public.pem"
    shown = cli("audit", "public-key", "--signing-key", key_file)
    assert shown.returncode == 0, shown.stderr
    public.write_text(shown.stdout)
    verdicts = {}
    for log_id in logs:
        export = out / f"{log_id}.jsonl"
        made = cli(
            "audit", "export", "--store", store, "--log-id", log_id,
            "--signing-key", key_file, "--out", export,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        verified = cli("audit", "verify", export, "--public-key", public)
        verdicts[log_id] = verified.stdout.strip().splitlines()[-1]
        assert verified.returncode == 0, verified.stdout
    return verdicts


def test_three_replicas_killed_once_each_keep_every_answer_in_one_log(
    tmp_path: Path, pg_store: str
) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    # limits in Redis on every request, high enough never to refuse
    limits = {"requests_per_minute": 1_000_000, "concurrent_requests": 1000}
    policies.add_tenant({"tenant": "replicas", "models": ["mistral-small"], "limits": limits})
    key = policies.add_key("replicas1", "replicas")
    key_file = tmp_path / "signing-key.pem"
    made = cli("audit", "keygen", "--out", key_file)
    assert made.returncode == 0, made.stderr
    with run_simulators(policies.path, tmp_path / "sim.log"):
        for port in policies.ports.values():
            Sim(port).configure(token_interval_s=0.02, output_tokens=12)
        with (
            replicas(policies.path, tmp_path, pg_store, key_file) as fleet,
            contextlib.ExitStack() as loads,
        ):
            assert fleet[0].gateway is not None
            load = [
                loads.enter_context(
                    Load(
                        f"http://127.0.0.1:{r.port}",
                        json_clients=3,
                        stream_clients=3,
                        tenant="replicas",
                        key=key,
                    )
                )
                for r in fleet
            ]
            began = time.monotonic()
            lives: list[tuple[float, float]] = []  # (killed, back) per replica
            for replica, at in zip(fleet, KILL_AT_S, strict=True):
                time.sleep(max(0.0, began + at - time.monotonic()))
                replica.kill_9()
                down = time.monotonic()
                replica.start()  # the same log id and port: it must continue its log
                lives.append((down, time.monotonic()))
            time.sleep(AFTER_LAST_S)
            for one in load:
                one.stop()
    seen = [s for one in load for s in one.seen]
    logs = records_by_log(pg_store)
    merged = {r["request_id"]: r for records in logs.values() for r in requests_of(records)}
    figures = check(seen, merged, Figures(f"{REPLICAS} replicas, each killed once (kill -9)"))
    answered_by = {r.log_id: one.seen for r, one in zip(fleet, load, strict=True)}
    misplaced, repeated = placement(answered_by, logs)
    verdicts = verify_each(pg_store, sorted(logs), key_file, tmp_path)
    per_log = {log_id: len(requests_of(records)) for log_id, records in logs.items()}
    served = Counter(s.status for s in seen if delivered(s))
    figures.notes += [
        f"killed {sum(r.starts - 1 for r in fleet)}, back in "
        + ", ".join(f"{back - down:.1f}" for down, back in lives)
        + " s",
        "statuses " + ", ".join(f"{k}: {v}" for k, v in sorted(served.items())),
        "requests per log " + ", ".join(f"{k} {v}" for k, v in sorted(per_log.items())),
        f"not in exactly one log {len(misplaced)}, records stored twice {len(repeated)}",
    ]
    figures.show()
    for log_id, verdict in verdicts.items():
        print(f"RELIABILITY audit verify {log_id}: {verdict}")
    assert sorted(logs) == [r.log_id for r in fleet]  # each continued its log, none began another
    assert figures.answered > 100 and served[200] > 100
    assert not misplaced, misplaced[:5]
    assert not repeated, repeated[:5]
    assert figures.lost == 0 and figures.disagree == 0
    for replica, one, (down, back) in zip(fleet, load, lives, strict=True):
        # it answered in both of its lives (and each answer is in its log, checked above)
        assert replica.starts == 2
        assert any(delivered(s) and s.status == 200 and s.answered < down for s in one.seen)
        assert any(delivered(s) and s.status == 200 and s.sent > back for s in one.seen)
