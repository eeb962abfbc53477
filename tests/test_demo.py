"""The README's first command ends in the scripted tour; it must keep passing, from any directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# the command line in a process where the `demo` extra's modules cannot be imported, as after
# `pip install sovereign-gateway` without `[demo]`
WITHOUT_DEMO_EXTRA = (
    "import sys; sys.modules['openai'] = sys.modules['aiohttp'] = None; "
    "from gateway.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(cwd, [sys.executable, "-m", "gateway", "demo", *args])


def _run(cwd: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        cmd,
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


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["demo"], "(openai, aiohttp)"),
        (["demo", "--base-url", "http://127.0.0.1:9"], "(openai)"),
        (["serve", "--with-simulators"], "(aiohttp)"),
        (["simulate"], "(aiohttp)"),
    ],
)
def test_without_the_demo_extra_its_commands_say_so_in_one_line(
    tmp_path: Path, command: list[str], needs: str
) -> None:
    done = _run(tmp_path, [sys.executable, "-c", WITHOUT_DEMO_EXTRA, *command])
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: {' '.join(command[:2]) if command[0] == 'serve' else command[0]} needs the"
        f" `demo` extra {needs}: pip install 'sovereign-gateway[demo]'"
    ]
    assert done.stdout == ""


def test_ports_chosen_together_are_all_different_and_free() -> None:
    """Servers started together (the simulated backends of one catalog) never share a port: the
    example catalog's ten backends once drew the same port twice, and one could not start."""
    import socket

    from gateway.dev.ports import free_ports

    for _ in range(20):
        ports = free_ports(40)
        assert len(set(ports)) == 40
        for port in ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
