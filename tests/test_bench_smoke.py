"""Keep the benchmark script working: a short run must produce a table with every target, and
every target must answer every cell without an error (Portkey's streams included)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import ROOT


def test_bench_quick_run_reports_every_target() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    assert "errors" not in out.stderr, out.stderr
    rows = [
        line
        for line in out.stdout.splitlines()
        if line.startswith(("| json | 1 |", "| stream | 4 |")) and len(line.split("|")) == 12
    ]
    targets = [
        "direct",
        "bare proxy",
        "bare proxy (httpx)",
        "litellm proxy",
        "portkey gateway",
        "gateway",
        "gateway + rpm (memory)",
        "gateway + rpm (redis)",
        "gateway --workers 1",
        "gateway --workers 2",
    ]
    assert [r.split("|")[3].strip() for r in rows] == targets * 2
    assert "load: wrk" in out.stdout
    # each proxy alone on the second core, the upstream and wrk on the first; two workers on both
    cores = next(line for line in out.stdout.splitlines() if line.startswith("cores: "))
    placed = dict(item.rsplit(" ", 1) for item in cores.removeprefix("cores: ").split(", "))
    proxy_core, load_core = ("1", "0") if (os.cpu_count() or 1) > 1 else ("0", "0")
    assert placed["wrk"] == placed["upstream"] == load_core, cores
    for name in targets[1:-1]:
        assert placed[name] == proxy_core, cores
    assert placed["gateway --workers 2"] == ("0,1" if proxy_core == "1" else "0"), cores
    for row in rows:
        cells = row.split("|")
        assert float(cells[4].replace(",", "")) > 0 and cells[10].strip() == "0", row
    assert "| Redis/memory rpm req/s |" in out.stdout


def test_policy_scale_quick_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.policy_scale", "--tenants", "50", "--deployments", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    row = out.stdout.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "50" and row[2].strip() == "40"
    assert float(row[8]) > 0  # lookup µs


def test_audit_bench_quick_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.audit", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    targets = [
        row.split("|")[3].strip()
        for row in out.stdout.splitlines()
        if row.startswith("| json | 4 |")
    ]
    assert targets == ["audit off", "audit sqlite", "audit postgres", "audit postgres +4 ms"]
    assert "| audit sqlite |" in out.stdout.split("mean batch")[1]
