"""Real servers on loopback for the tests: simulated backends, the gateway under uvicorn."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import openai
import yaml

from gateway.dev.ports import free_port, free_ports

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICIES = ROOT / "policies"
__all__ = ["free_port"]


class ClientFor(Protocol):
    """The `client_for` fixture: an OpenAI client with a tenant's key, pointed at the gateway."""

    def __call__(self, tenant: str = ...) -> openai.OpenAI: ...


def error_body(error: openai.APIError) -> dict[str, Any]:
    """The `error` object of an OpenAI error response, as the SDK parsed it."""
    body = error.body
    assert isinstance(body, dict), body
    return body


class AsyncClientFor(Protocol):
    def __call__(self, tenant: str = ...) -> openai.AsyncOpenAI: ...


def wait_http(
    url: str, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout_s}s: {last}")


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@dataclass
class PolicyDir:
    """A copy of the example policies with the simulated backends moved to free ports."""

    path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_examples(cls, path: Path) -> PolicyDir:
        shutil.copytree(EXAMPLE_POLICIES, path)
        catalog = (path / "catalog.yaml").read_text()
        old_ports = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", catalog)))
        mapping = dict(zip(old_ports, free_ports(len(old_ports)), strict=True))

        def move(match: re.Match[str]) -> str:
            return f"127.0.0.1:{mapping[match.group(1)]}"

        (path / "catalog.yaml").write_text(re.sub(r"127\.0\.0\.1:(\d+)", move, catalog))
        data = yaml.safe_load((path / "catalog.yaml").read_text())
        ports = {
            name: int(str(b["base_url"]).split(":")[2].split("/")[0])
            for name, b in data["backends"].items()
        }
        return cls(path, ports)

    def edit_catalog(self, change: Any) -> None:
        data = yaml.safe_load((self.path / "catalog.yaml").read_text())
        change(data)
        (self.path / "catalog.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def add_tenant(self, tenant: dict[str, Any]) -> None:
        (self.path / "tenants" / f"{tenant['tenant']}.yaml").write_text(yaml.safe_dump(tenant))

    def add_key(self, key_id: str, tenant: str | None, role: str = "tenant") -> str:
        from gateway.auth.keys import PREFIX, hash_key

        key = f"{PREFIX}{key_id}-test-secret-{key_id}"
        data = yaml.safe_load((self.path / "keys.yaml").read_text())
        entry = {"id": key_id, "role": role, "sha256": hash_key(key)}
        if tenant is not None:
            entry["tenant"] = tenant
        data["keys"].append(entry)
        (self.path / "keys.yaml").write_text(yaml.safe_dump(data))
        return key


@dataclass
class Gateway:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def v1(self) -> str:
        return self.base + "/v1"


def sovereign_gateway(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`sovereign-gateway ARGS` as an admin runs it (`python -m gateway`), with its output."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def add_dead_backend(policies: PolicyDir) -> None:
    """A vLLM backend nobody listens on (127.0.0.2, a free port), the only one serving `ghost`."""
    port = free_port()

    def add(catalog: dict[str, Any]) -> None:
        catalog["backends"]["dead-backend"] = {
            "kind": "vllm",
            "base_url": f"http://127.0.0.2:{port}/v1",
            "country": "FR",
            "operator": {"name": "Nobody", "jurisdiction": "FR"},
            "self_hosted": True,
        }
        catalog["models"]["ghost"] = {"developer": "Nobody", "developer_country": "FR"}
        catalog["deployments"].append(
            {"model": "ghost", "backend": "dead-backend", "upstream_model": "ghost"}
        )

    policies.edit_catalog(add)


@contextlib.contextmanager
def run_simulators(policy_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with process(
        [sys.executable, "-m", "gateway", "simulate", "--policy-dir", str(policy_dir)], log=log
    ) as proc:
        data = yaml.safe_load((policy_dir / "catalog.yaml").read_text())
        for backend in data["backends"].values():
            url = str(backend["base_url"])
            if url.startswith("http://127.0.0.1:") and backend["kind"] != "litellm":
                wait_http(url.removesuffix("/v1") + "/health", 60.0, proc)
        yield proc


@contextlib.contextmanager
def run_gateway(policy_dir: Path, log: Path, **settings: Any) -> Iterator[Gateway]:
    port = free_port()
    settings.setdefault("audit_store", f"sqlite:{log.with_suffix('.audit.sqlite3')}")
    settings.setdefault("audit_signing_key_file", log.with_suffix(".signing-key.pem"))
    env = {f"SGW_{k.upper()}": str(v) for k, v in settings.items()}
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        str(port),
        "--policy-dir",
        str(policy_dir),
    ]
    with process(cmd, env=env, log=log) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/ready", 90.0, proc)
        yield Gateway(base, proc, log)


class Sim:
    """Control a simulated backend through its test-only `/_sim/config` endpoint."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def configure(self, **values: Any) -> dict[str, Any]:
        r = httpx.post(self.url + "/_sim/config", json=values, timeout=5)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url + "/_sim/config", timeout=5).json()
        return result

    def reset(self) -> None:
        self.configure(
            ttft_s=0,
            token_interval_s=0,
            fail_status=0,
            fail_count=0,
            error_style="nested",
            reset_after_chunks=0,
            hang=False,
            close_connections=False,
            fail_user="",
            waiting=0,
            kv_cache_usage=0.0,
            output_tokens=12,
        )

    def last_request(self) -> dict[str, Any]:
        requests = self.state()["requests"]
        assert requests, "the backend received no request"
        result: dict[str, Any] = requests[-1]
        return result
