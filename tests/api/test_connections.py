"""Slow and idle connections: a deadline for request headers and a cap on open connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, run_gateway

ADMIN = {"authorization": "Bearer sk-sgw-demoadmin-demo-key-not-a-secret"}
CAP = 20


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, PolicyDir]]:
    root = tmp_path_factory.mktemp("connections")
    policies = PolicyDir.from_examples(root / "policies")
    with run_gateway(
        policies.path,
        root / "gateway.log",
        header_timeout_s=1.0,
        max_connections=CAP,
        policy_watch_interval_s=0.2,
        log_level="warning",
    ) as gw:
        yield gw, policies


def _half_request(port: int) -> socket.socket:
    """A request line and half a header, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
    return sock


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server closes the connection (whatever it said before: the connections over
    the cap are answered 503 first)."""
    deadline = time.monotonic() + within_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def _port(gw: Gateway) -> int:
    return int(gw.base.rsplit(":", 1)[1])


def test_a_connection_without_complete_headers_is_closed(
    guarded: tuple[Gateway, PolicyDir],
) -> None:
    gw, _ = guarded
    slow = _half_request(_port(gw))
    idle = socket.create_connection(("127.0.0.1", _port(gw)), timeout=5)  # sends nothing at all
    try:
        began = time.monotonic()
        assert _closed_by_server(slow, 5.0)
        assert _closed_by_server(idle, 5.0)
        assert time.monotonic() - began < 4.0
    finally:
        slow.close()
        idle.close()


def test_a_full_house_is_refused_clearly_and_the_gateway_keeps_working(
    guarded: tuple[Gateway, PolicyDir], tmp_path: Path
) -> None:
    gw, policies = guarded
    revision = httpx.get(gw.base + "/admin/policy", headers=ADMIN).json()["revision"]
    held = [_half_request(_port(gw)) for _ in range(CAP + 5)]
    try:
        time.sleep(0.2)
        refused = socket.create_connection(("127.0.0.1", _port(gw)), timeout=5)
        refused.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = b""
        while chunk := refused.recv(65536):
            answer += chunk
        refused.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert orjson.loads(body)["error"]["code"] == "too_many_connections"
        # the policy watcher keeps working while the house is full
        tenant = policies.path / "tenants" / "acme-dev.yaml"
        tenant.write_text(tenant.read_text().replace("60", "61", 1))
        time.sleep(0.5)
        # and the slow connections are closed by their header deadline
        assert all(_closed_by_server(sock, 3.0) for sock in held)
    finally:
        for sock in held:
            sock.close()
    assert httpx.get(gw.base + "/health", timeout=5).status_code == 200
    now = httpx.get(gw.base + "/admin/policy", headers=ADMIN, timeout=5).json()
    assert now["revision"] != revision
    assert now["last_reload"]["ok"] is True
    # and the audit log still takes records: a refusal is answered once its record is in
    response = httpx.post(
        gw.v1 + "/chat/completions",
        json={"model": "no-such-model", "messages": []},
        headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
        timeout=10,
    )
    assert response.status_code == 404
