"""`serve --with-simulators`: simulated backends on free ports, and the catalog pointed at them.

The simulators listen on ports chosen now (free ones, or `base_port`, `base_port + 1`, ...), never
on the ports written in the catalog, so two people on one machine never share simulators. The
gateway then serves a mirror of the policy directory in which each simulated backend's loopback
address carries its new port; the mirror follows edits of the original, so policy reloads work
as without simulators. Start-up fails, naming the backend, if any simulator cannot listen.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.dev.ports import free_ports
from gateway.dev.simulator.catalog import simulated_backends
from gateway.policy.load import load_policy_dir

READY = "simulators ready"
LOOPBACK_URL = re.compile(r"(?P<host>127\.0\.0\.1|localhost|\[::1\]):(?P<port>\d+)")


class SimulatorsFailed(Exception):
    """A simulated backend did not start; the message says which and why."""


def port_plan(ports: list[int], base_port: int | None) -> dict[int, int]:
    """The new port for each port of the catalog: consecutive from `base_port`, or free ones."""
    unique = sorted(set(ports))
    if base_port is not None:
        return {old: base_port + i for i, old in enumerate(unique)}
    return dict(zip(unique, free_ports(len(unique)), strict=True))


def moved(text: str, plan: dict[int, int]) -> str:
    def move(match: re.Match[str]) -> str:
        port = plan.get(int(match["port"]))
        return match[0] if port is None else f"{match['host']}:{port}"

    return LOOPBACK_URL.sub(move, text)


@dataclass
class PolicyMirror:
    """A copy of a policy directory whose catalog reaches the simulators on their ports."""

    source: Path
    target: Path
    plan: dict[int, int]
    _stop: threading.Event = field(default_factory=threading.Event)

    def sync(self) -> None:
        wanted: set[Path] = set()
        for path in sorted(self.source.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(self.source)
            wanted.add(relative)
            data = path.read_bytes()
            if relative == Path("catalog.yaml"):
                data = moved(data.decode("utf-8"), self.plan).encode("utf-8")
            copy = self.target / relative
            if copy.exists() and copy.read_bytes() == data:
                continue
            copy.parent.mkdir(parents=True, exist_ok=True)
            staged = copy.with_name(copy.name + ".sync")
            staged.write_bytes(data)
            staged.replace(copy)  # never half a file for the gateway's reloader to read
        for path in sorted(self.target.rglob("*"), reverse=True):
            if path.is_file() and path.relative_to(self.target) not in wanted:
                path.unlink()

    def follow(self, interval_s: float = 1.0) -> None:
        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sync()
                except OSError:
                    continue  # a file replaced while read: the next round copies it

        threading.Thread(target=run, name="policy-mirror", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Simulators:
    process: subprocess.Popen[str]
    mirror: PolicyMirror
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def policy_dir(self) -> Path:
        return self.mirror.target

    def stop(self) -> None:
        self.mirror.stop()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.workdir.cleanup()


def start_simulators(
    policy_dir: Path, base_port: int | None = None, timeout_s: float = 60.0
) -> Simulators:
    specs = simulated_backends(load_policy_dir(policy_dir).catalog)
    plan = port_plan([port for _, port, _ in specs], base_port)
    workdir = tempfile.TemporaryDirectory(prefix="sovereign-gateway-simulators-")
    mirror = PolicyMirror(policy_dir, Path(workdir.name) / "policies", plan)
    mirror.sync()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "--policy-dir", str(mirror.target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    simulators = Simulators(process, mirror, workdir)
    try:
        _wait_ready(process, timeout_s)
    except BaseException:  # a failure, or the gateway stopped while waiting: no orphans
        simulators.stop()
        raise
    mirror.follow()
    return simulators


def _wait_ready(process: subprocess.Popen[str], timeout_s: float) -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drains the pipe for the simulators' whole life
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=read, name="simulators-output", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line == READY:
            return
        if line is None:  # the process ended
            process.wait()
            break
        seen.append(line)
    detail = "\n".join(seen[-3:]) + f"\n(status {process.poll()})"
    raise SimulatorsFailed(f"the simulated backends did not start:\n{detail}")
