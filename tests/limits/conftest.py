"""Gateway processes on loopback for the limits tests: three sharing the local Redis (each test
module gets a key prefix of its own), and two reaching it through a proxy the tests control, one
failing closed and one failing open. They start together: one start-up's wait for all five."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GATEWAY_SETTINGS
from tests.harness import Gateway, PolicyDir, Sim, free_port, process, run_simulators, wait_http
from tests.limits.stores import REDIS_URL, RedisProxy, random_prefix

TENANTS: dict[str, dict[str, Any]] = {
    "rpm-json": {"requests_per_minute": 6},
    "rpm-stream": {"requests_per_minute": 6},
    "tpm-json": {"tokens_per_minute": 1000},
    "tpm-stream": {"tokens_per_minute": 1000},
    "conc-json": {"concurrent_requests": 2},
    "conc-stream": {"concurrent_requests": 2},
    "month": {"tokens_per_month": 150},
    "capped": {"max_tokens": 50, "requests_per_minute": 100},
    "keyed": {"requests_per_minute": 100, "keys": {"keyedtight": {"requests_per_minute": 2}}},
    "faults": {"requests_per_minute": 5},
    "open": {"requests_per_minute": 1000},
}


@dataclass
class Fleet:
    """The running gateways and what the tests need to reach and restart them."""

    shared: list[Gateway]
    closed: Gateway
    open: Gateway
    proxy: RedisProxy
    keys: dict[str, str]
    sims: list[Sim]
    restart_shared: Any


@contextlib.contextmanager
def gateways(
    policy_dir: Path, logs: Path, runs: list[tuple[str, dict[str, Any]]]
) -> Iterator[list[Gateway]]:
    """Start every gateway first, then wait for them all."""
    with contextlib.ExitStack() as stack:
        started = []
        for name, settings in runs:
            log = logs / f"{name}.log"
            values = {
                **GATEWAY_SETTINGS,
                "audit_store": f"sqlite:{log.with_suffix('.audit.sqlite3')}",
                "audit_signing_key_file": log.with_suffix(".signing-key.pem"),
                **settings,
            }
            env = {f"SGW_{k.upper()}": str(v) for k, v in values.items()}
            port = free_port()
            cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
            cmd += ["--policy-dir", str(policy_dir)]
            proc = stack.enter_context(process(cmd, env=env, log=log))
            started.append(Gateway(f"http://127.0.0.1:{port}", proc, log))
        for gw in started:
            wait_http(gw.base + "/ready", 90.0, gw.proc)
        yield started


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("limits")
    policies = PolicyDir.from_examples(root / "policies")
    keys: dict[str, str] = {}
    for tenant, limits in TENANTS.items():
        policies.add_tenant({"tenant": tenant, "models": ["mistral-small"], "limits": limits})
        key_id = tenant.replace("-", "") + "key01"
        keys[tenant] = policies.add_key(key_id, tenant)
    keys["keyed-tight"] = policies.add_key("keyedtight", "keyed")
    prefix = random_prefix()
    # a loaded two-core machine runs five gateways here: a generous deadline for the shared ones
    shared = {"limits_store": REDIS_URL, "limits_key_prefix": prefix, "limits_timeout_s": 2.0}
    with (
        run_simulators(policies.path, root / "sim.log"),
        RedisProxy().running() as proxy,
        contextlib.ExitStack() as stack,
    ):
        through = {"limits_store": proxy.url, "limits_key_prefix": prefix, "limits_timeout_s": 0.5}
        runs = [(f"shared-{i}", shared) for i in range(3)]
        runs += [("closed", through), ("open", {**through, "limits_fail_open": True})]
        current = stack.enter_context(gateways(policies.path, root, runs))
        fleet = Fleet(
            current[:3],
            current[3],
            current[4],
            proxy,
            keys,
            [Sim(port) for name, port in policies.ports.items()],
            None,
        )

        def restart_shared() -> None:
            for gw in fleet.shared:
                gw.proc.terminate()
                gw.proc.wait(10)
            runs = [(f"shared-again-{i}", shared) for i in range(3)]
            fleet.shared = stack.enter_context(gateways(policies.path, root, runs))

        fleet.restart_shared = restart_shared
        yield fleet
