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
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)  # noqa: S311 (not a secret)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded machine: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
