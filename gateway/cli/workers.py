"""`serve --workers N`: N gateway processes answering on one port.

The parent binds the listening socket once and starts N children (`serve --worker-index I
--listen-fd FD`) that inherit it: the kernel hands each new connection to one of them, as with
uvicorn's or gunicorn's workers. Each child is a whole gateway and its own replica for the audit
log (`<log id>-w<I>`). A child that dies is started again in its slot, so it continues its log; a
child that refuses to start (exit 2: its log is taken, the policy does not load) stops them all.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from gateway.settings import Settings

log = logging.getLogger("gateway.workers")

RESTART_DELAY_S = 1.0


def listening_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(settings: Settings, workers: int, child_args: Sequence[str]) -> int:
    """Run `workers` children until told to stop; the exit code of the whole."""
    if workers > 1 and settings.limits_store == "memory":
        log.warning(
            "limits_store is memory and %d workers run: each worker counts requests, tokens and"
            " budgets alone, so together they admit up to %d times each limit; set limits_store"
            " to a redis:// URL to share them",
            workers,
            workers,
        )
    if settings.audit_enabled:  # made once here, not raced for by the workers
        from gateway.audit.setup import signer_from_settings

        signer_from_settings(settings)
    try:
        sock = listening_socket(settings)
    except OSError as exc:
        print(f"error: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        fd = str(sock.fileno())
        cmd = [sys.executable, "-m", "gateway", "serve", *child_args]
        cmd += ["--worker-index", str(index), "--listen-fd", fd]
        return subprocess.Popen(cmd, pass_fds=(sock.fileno(),))

    children = {i: start(i) for i in range(workers)}
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, child in list(children.items()):
                status = child.poll()
                if status is None or stopping:
                    continue
                if status == 2:  # refused to start: starting it again would not help
                    log.error("worker %d refused to start; stopping the others", index)
                    stopping, code = True, 2
                    break
                log.error("worker %d exited with %s; starting it again", index, status)
                time.sleep(RESTART_DELAY_S)
                children[index] = start(index)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        sock.close()
    return code
