"""The README's first command ends in the scripted tour; it must keep passing, from any directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a timeout can stop the gateway and simulators it started
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_the_demo_tour_passes_from_an_empty_directory_and_leaves_nothing_there(
    tmp_path: Path,
) -> None:
    done = _demo(tmp_path)  # no policy directory here: the shipped examples are used
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("all checks passed")
    assert list(tmp_path.iterdir()) == []


def test_the_demo_names_a_missing_policy_directory(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--policy-dir", "nowhere")
    assert done.returncode == 2
    assert "the policy directory nowhere" in done.stderr
    assert "does not exist" in done.stderr
