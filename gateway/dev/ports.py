"""Ports for servers that another process will start: the simulated backends, the demo's
gateway, the tests' servers."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    """A free port for a server that another process will start.

    Taken below the kernel's ephemeral range: a port from `bind(0)` comes from that range, where
    any outgoing connection may take it before the server binds it."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different free ports: each stays bound until all are chosen, so that two servers
    started together are never given the same one."""
    low = _ephemeral_low()
    held: list[socket.socket] = []
    try:
        for _ in range(200 + count):
            if len(held) == count:
                break
            port = random.randrange(max(1024, low - 12000), low)  # noqa: S311 (not a secret)
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
        while len(held) < count:  # a crowded machine: fall back to the kernel's choice
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        ports: list[int] = [s.getsockname()[1] for s in held]
        return ports
    finally:
        for s in held:
            s.close()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
