"""The README's first command ends in the scripted tour; it must keep passing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import EXAMPLE_POLICIES


def test_the_demo_tour_passes_and_leaves_an_audit_log(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--policy-dir", str(EXAMPLE_POLICIES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("all checks passed")
    assert (tmp_path / "var" / "audit.sqlite3").stat().st_size > 0
