"""Keep the benchmark script working: a short run must produce a table with every target."""

from __future__ import annotations

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
        if line.startswith("| json | 1 |") and len(line.split("|")) == 11
    ]
    assert [r.split("|")[3].strip() for r in rows] == [
        "direct",
        "bare proxy",
        "bare proxy (httpx)",
        "gateway",
    ]
    for row in rows:
        assert float(row.split("|")[4].replace(",", "")) > 0
