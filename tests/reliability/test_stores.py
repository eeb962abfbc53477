"""The audit store under real faults, with real processes on loopback and bounded load: `kill -9`
(SQLite and PostgreSQL), PostgreSQL refused and stalled through a proxy the test controls (the
shared server is never stopped; each test has a schema of its own), SQLite on a small full tmpfs,
a soak with clients leaving, reloads under load, SIGTERM.

Each prints its figures (`RELIABILITY | scenario | answered | recorded | lost | disagree | 503 |
forwarded while down | recovered in |`) and asserts the promise: every answer is in the log with
the outcome its client saw, no token without an admission record, nothing forwarded while the
store is known to be down, and the gateway comes back by itself. `make reliability` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.export import export_log
from gateway.audit.setup import open_store
from gateway.audit.signing import Signer
from gateway.audit.verify import verify_export
from tests.faults.proxy import FaultProxy, Mode
from tests.harness import PolicyDir, Sim, run_gateway, run_simulators
from tests.reliability.drive import Figures, Load, all_records, check, merged_records

pytestmark = pytest.mark.reliability

DETECT_S = 3.0  # audit_timeout_s (2 s) and a margin: requests in flight when a fault begins
LABELS = {"refuse": "refusing connections", "stall": "stalled (accepts, never answers)"}
BACKENDS = ("vllm-paris", "vllm-frankfurt")  # mistral-small's deployments of first priority


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicyDir, list[Sim]]]:
    root = tmp_path_factory.mktemp("reliability")
    policies = PolicyDir.from_examples(root / "policies")
    with run_simulators(policies.path, root / "sim.log"):
        sims = [Sim(policies.ports[name]) for name in BACKENDS]
        for sim in sims:
            sim.configure(token_interval_s=0.02, output_tokens=12)
        yield policies, sims


def received(sims: list[Sim]) -> int:
    return sum(int(sim.state()["received"]) for sim in sims)


def settings(tmp_path: Path, store: str, **more: Any) -> dict[str, Any]:
    return {
        "audit_store": store,
        "audit_log_id": "replica-r",
        "audit_signing_key_file": tmp_path / "key.pem",
        "audit_checkpoint_interval_s": 1.0,
        "log_level": "warning",
        "health_probe_interval_s": 0,
        **more,
    }


def verified(store: str, key_file: Path) -> bool:
    async def lines() -> list[bytes]:
        s = open_store(store)
        await s.open()
        try:
            return list(await export_log(s, "replica-r"))
        finally:
            await s.aclose()

    report = verify_export(asyncio.run(lines()), Signer.from_file(key_file).public_key)
    assert report.ok, report.failures[:5]
    return True


def first_200_after(load: Load, moment: float, seconds: float = 20) -> float:
    """Seconds from `moment` until a request sent after it was served, or fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        served = [s.answered for s in load.since(moment) if s.status == 200 and not s.error]
        if served:
            return min(served) - moment
        time.sleep(0.05)
    raise AssertionError(f"not back {seconds:g} s after the store was")


# ---- kill -9 under load -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_kill_9_under_load_loses_no_answer(
    kind: str, backends: tuple[PolicyDir, list[Sim]], tmp_path: Path, request: Any
) -> None:
    policies, _ = backends
    store = (
        f"sqlite:{tmp_path / 'audit.sqlite3'}"
        if kind == "sqlite"
        else request.getfixturevalue("pg_store")
    )
    seen = []
    for round_ in range(3):
        with run_gateway(
            policies.path, tmp_path / f"gw{round_}.log", **settings(tmp_path, store)
        ) as gw:
            with Load(gw.base) as load:
                time.sleep(1.0 + round_ * 0.4)
                gw.proc.send_signal(signal.SIGKILL)
                gw.proc.wait()
            seen += load.seen
    figures = check(seen, merged_records(store), Figures(f"kill -9 x3 under load, {kind}"))
    figures.show()
    assert figures.answered > 50
    assert figures.lost == 0 and figures.disagree == 0
    assert verified(store, tmp_path / "key.pem")


# ---- PostgreSQL refused, then stalled, through a proxy ------------------------------------------


def test_postgres_refused_and_stalled_under_load(
    backends: tuple[PolicyDir, list[Sim]], pg_store: str, tmp_path: Path
) -> None:
    policies, sims = backends
    with FaultProxy(5432).running() as proxy:
        through = pg_store.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        with (
            run_gateway(policies.path, tmp_path / "gw.log", **settings(tmp_path, through)) as gw,
            Load(gw.base) as load,
        ):
            time.sleep(1.5)
            rows = []
            for fault in ("refuse", "stall"):
                proxy.mode = Mode(fault)
                time.sleep(DETECT_S)
                before, down = received(sims), time.monotonic()
                time.sleep(5)
                forwarded = received(sims) - before
                proxy.mode = Mode()
                healed = time.monotonic()
                recover = first_200_after(load, healed)
                time.sleep(1)
                in_outage = [s for s in load.since(down) if s.sent < healed]
                rows.append((fault, forwarded, recover, in_outage))
            load.stop()
            log_lines = gw.log.read_text().splitlines()
    merged = merged_records(pg_store)
    for fault, forwarded, recover, in_outage in rows:
        figures = check(
            in_outage, merged, Figures(f"PostgreSQL {LABELS[fault]} 5 s (through a proxy)")
        )
        figures.forwarded_down, figures.recover_s = forwarded, recover
        figures.notes.append(f"{len(log_lines)} log lines in all")
        figures.show()
        assert figures.refused_503 > 0
        assert forwarded == 0 and figures.disagree == 0
    whole = check(load.seen, merged, Figures("PostgreSQL faults, whole run"))
    whole.show()
    assert whole.lost == 0 and whole.disagree == 0
    assert len(log_lines) < 60
    assert verified(pg_store, tmp_path / "key.pem")


# ---- SQLite on a small full volume --------------------------------------------------------------


@contextlib.contextmanager
def small_volume(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of its own (the scenario needs root to mount it; it fails, never skips)."""
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path) -> Path:
    """Fill the volume to the last byte."""
    filler = volume / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 2**16)
            out.flush()
    return filler


def test_sqlite_on_a_full_volume_under_load(
    backends: tuple[PolicyDir, list[Sim]], tmp_path: Path
) -> None:
    policies, sims = backends
    with small_volume(tmp_path / "vol", 32) as volume:
        store = f"sqlite:{volume / 'audit.sqlite3'}"
        with (
            run_gateway(policies.path, tmp_path / "gw.log", **settings(tmp_path, store)) as gw,
            Load(gw.base) as load,
        ):
            time.sleep(1.5)
            filler = fill(volume)
            time.sleep(DETECT_S)
            before, down = received(sims), time.monotonic()
            time.sleep(5)
            forwarded = received(sims) - before
            filler.unlink()
            healed = time.monotonic()
            recover = first_200_after(load, healed)
            time.sleep(1)
            load.stop()
        merged = merged_records(store)
        in_outage = [s for s in load.seen if down <= s.sent < healed]
        figures = check(in_outage, merged, Figures("SQLite volume full 5 s (tmpfs 32 MiB)"))
        figures.forwarded_down, figures.recover_s = forwarded, recover
        figures.show()
        whole = check(load.seen, merged, Figures("SQLite volume full, whole run"))
        whole.show()
        assert forwarded == 0 and figures.refused_503 > 0
        assert whole.lost == 0 and whole.disagree == 0
        assert verified(store, tmp_path / "key.pem")


# ---- a soak with clients leaving, reloads, SIGTERM ----------------------------------------------


def test_soak_with_clients_leaving_and_reloads(
    backends: tuple[PolicyDir, list[Sim]], tmp_path: Path
) -> None:
    policies, _ = backends
    store = f"sqlite:{tmp_path / 'audit.sqlite3'}"
    with (
        run_gateway(policies.path, tmp_path / "gw.log", **settings(tmp_path, store)) as gw,
        Load(gw.base, json_clients=8, stream_clients=16, leave_fraction=0.5) as load,
    ):
        began = time.monotonic()
        reloads = 0
        while time.monotonic() - began < 20:
            time.sleep(1)
            gw.proc.send_signal(signal.SIGHUP)
            reloads += 1
        load.stop()
        time.sleep(1.5)  # the records of clients that left are written without them
    merged = merged_records(store)
    figures = check(
        load.seen, merged, Figures(f"soak 20 s, half the streams leave, {reloads} reloads")
    )
    left = [s for s in load.seen if s.left]
    unrecorded_left = [s for s in left if s.request_id not in merged]
    figures.notes.append(f"{len(left)} streams left, {len(unrecorded_left)} of them unrecorded")
    figures.show()
    assert figures.answered > 200 and len(left) >= 10  # the scenario had clients leave
    assert figures.lost == 0 and figures.disagree == 0 and not unrecorded_left
    counted = [r for r in all_records(store) if r.get("request_id")]
    assert len(merged) <= len(counted)  # merged: one entry per request, never more
    assert verified(store, tmp_path / "key.pem")


def test_sigterm_drains_streams_and_records_them(
    backends: tuple[PolicyDir, list[Sim]], tmp_path: Path
) -> None:
    policies, sims = backends
    for sim in sims:
        sim.configure(token_interval_s=0.1, output_tokens=12)  # streams of about 1.2 s
    store = f"sqlite:{tmp_path / 'audit.sqlite3'}"
    try:
        with (
            run_gateway(policies.path, tmp_path / "gw.log", **settings(tmp_path, store)) as gw,
            Load(gw.base, json_clients=4, stream_clients=12) as load,
        ):
            time.sleep(2.0)
            term = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            gw.proc.wait(30)
    finally:
        for sim in sims:
            sim.configure(token_interval_s=0.02, output_tokens=12)
    in_flight = [s for s in load.seen if s.stream and s.sent < term and s.answered > term]
    cut = [s for s in in_flight if s.token and not s.done]
    figures = check(load.seen, merged_records(store), Figures("SIGTERM under load"))
    figures.notes.append(f"{len(in_flight)} streams in flight at SIGTERM, {len(cut)} cut")
    figures.show()
    assert figures.lost == 0 and figures.disagree == 0
    assert in_flight and not cut
    assert os.path.exists(store.removeprefix("sqlite:"))
