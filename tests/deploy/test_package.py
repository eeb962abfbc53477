"""The installed command works from any directory: `init`, `serve` from the directory it made,
simulators on ports of their own, a missing policy directory named as such, and TLS on both
sides (the listener's certificate reloaded, backends reached with a private CA and a client
certificate)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.dev.demo import demo_key
from gateway.settings import load_settings
from tests.deploy.certs import CA
from tests.harness import PolicyDir, free_port, process, run_gateway, sovereign_gateway, wait_http


def init(directory: Path) -> Path:
    done = sovereign_gateway("init", directory)
    assert done.returncode == 0, done.stderr
    return directory


@contextlib.contextmanager
def serving_from(directory: Path, *args: str) -> Iterator[str]:
    """`sovereign-gateway serve ARGS` started in `directory`, as a user would."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with (directory.parent / f"serve-{port}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/ready", 60.0, proc)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_init_writes_a_directory_whose_policies_check_and_pass_their_tests(tmp_path: Path) -> None:
    directory = init(tmp_path / "gw")
    assert sorted(p.name for p in directory.iterdir()) == ["policies", "sovereign-gateway.yaml"]
    policies = directory / "policies"
    assert (policies / "catalog.yaml").is_file() and (
        policies / "schema" / "catalog.schema.json"
    ).is_file()
    assert list((policies / "tests").glob("*.yaml"))
    assert sovereign_gateway("policy", "check", policies).returncode == 0
    done = sovereign_gateway("policy", "test", policies)
    assert done.returncode == 0, done.stdout


def test_init_leaves_a_directory_with_files_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = sovereign_gateway("init", tmp_path)
    assert done.returncode == 2 and "not an empty directory" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_serve_from_an_initialised_directory_answers_through_the_sdk(tmp_path: Path) -> None:
    directory = init(tmp_path / "gw")
    # the example catalog names ports 8101-8110; someone else's simulators may hold them
    with contextlib.ExitStack() as taken:
        for port in (8101, 8102):
            s = taken.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port))
                s.listen()
        with serving_from(directory, "--with-simulators") as base:
            client = openai.OpenAI(
                base_url=base + "/v1", api_key=demo_key("fr-public-body"), max_retries=0
            )
            raw = client.chat.completions.with_raw_response.create(
                model="mistral-small",
                messages=[{"role": "user", "content": "Bonjour"}],
                max_tokens=4,
            )
            assert raw.headers["x-sovereign-country"] == "FR"
            assert raw.parse().choices[0].message.content
            # the gateway serves a copy that points at the simulators; edits of the original reach it
            before = httpx.get(base + "/ready", timeout=5).json()["policy_revision"]
            tenant = directory / "policies" / "tenants" / "acme-dev.yaml"
            tenant.write_text(
                tenant.read_text().replace("requests_per_minute: 60", "requests_per_minute: 61")
            )
            deadline = time.monotonic() + 30
            while httpx.get(base + "/ready", timeout=5).json()["policy_revision"] == before:
                assert time.monotonic() < deadline, "the edit was not reloaded"
                time.sleep(0.3)
    assert (directory / "var" / "audit.sqlite3").stat().st_size > 0
    assert sorted(p.name for p in directory.iterdir()) == [
        "policies",
        "sovereign-gateway.yaml",
        "var",
    ]
    assert (
        "8101" in (directory / "policies" / "catalog.yaml").read_text()
    )  # the original is untouched


def test_serve_without_a_policy_directory_names_it_and_creates_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"the policy directory policies ({tmp_path / 'policies'}) does not exist" in done.stderr
    assert "sovereign-gateway init" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_stops_when_a_simulator_cannot_take_its_port(tmp_path: Path) -> None:
    directory = init(tmp_path / "gw")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        base_port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--with-simulators",
                "--simulator-base-port",
                str(base_port),
            ],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert "the simulated backends did not start" in done.stderr
    # the catalog's lowest port (vllm-paris, 8101) moves to the base port, which is taken
    assert f"vllm-paris cannot listen on 127.0.0.1:{base_port}" in done.stderr


def test_a_settings_file_takes_relative_paths_from_its_own_directory(tmp_path: Path) -> None:
    directory = init(tmp_path / "gw")
    settings = load_settings(directory / "sovereign-gateway.yaml")
    assert settings.policy_dir == directory / "policies"
    assert settings.audit_store == f"sqlite:{directory / 'var' / 'audit.sqlite3'}"
    assert settings.audit_signing_key_file == directory / "var" / "audit-signing-key.pem"


# ---- TLS ------------------------------------------------------------------------------------


def _served_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_the_listener_serves_https_and_picks_up_a_renewed_certificate(tmp_path: Path) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    ca = CA(tmp_path)
    first = ca.issue("gateway", server=True)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    port = free_port()
    env = {
        "SGW_TLS_CERT_FILE": str(cert),
        "SGW_TLS_KEY_FILE": str(key),
        "SGW_TLS_RELOAD_INTERVAL_S": "0.2",
        "SGW_AUDIT_STORE": f"sqlite:{tmp_path / 'audit.sqlite3'}",
        "SGW_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "signing.pem"),
        "SGW_HEALTH_PROBE_INTERVAL_S": "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        str(port),
        "--policy-dir",
        str(policies.path),
    ]
    with process(cmd, env=env, log=tmp_path / "gw.log") as proc:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "gw.log").read_text()
            try:
                answer = httpx.get(
                    f"https://127.0.0.1:{port}/ready",
                    verify=ssl.create_default_context(cafile=str(ca.file)),
                    timeout=2,
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert answer.status_code == 200
        assert _served_certificate(port, ca.file) == _der(first.cert)
        renewed = ca.issue("gateway-renewed", server=True)
        key.write_bytes(
            renewed.key.read_bytes()
        )  # the key first: a moment of mismatch must not hurt
        cert.write_bytes(renewed.cert.read_bytes())
        deadline = time.monotonic() + 10
        while _served_certificate(port, ca.file) != _der(renewed.cert):
            assert time.monotonic() < deadline, "the renewed certificate was not picked up"
            time.sleep(0.2)
        assert (
            httpx.get(
                f"https://127.0.0.1:{port}/health",
                verify=ssl.create_default_context(cafile=str(ca.file)),
                timeout=5,
            ).status_code
            == 200
        )


def _der(pem_file: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem_file.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


def _one_tls_backend(policies: PolicyDir, tls: dict[str, str]) -> None:
    def change(catalog: dict[str, object]) -> None:
        backends = catalog["backends"]
        assert isinstance(backends, dict)
        paris = backends["vllm-paris"]
        paris["base_url"] = paris["base_url"].replace("http://", "https://")
        paris["metrics_url"] = paris["metrics_url"].replace("http://", "https://")
        paris["tls"] = tls
        catalog["backends"] = {"vllm-paris": paris}
        deployments = catalog["deployments"]
        assert isinstance(deployments, list)
        catalog["deployments"] = [d for d in deployments if d["backend"] == "vllm-paris"]

    policies.edit_catalog(change)


@pytest.mark.parametrize("with_client_certificate", [True, False])
def test_a_backend_is_reached_with_its_private_ca_and_client_certificate(
    tmp_path: Path, with_client_certificate: bool
) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    ca = CA(tmp_path / "policies", "Backend CA")
    server = ca.issue("backend", server=True)
    client = ca.issue("gateway-client", server=False)
    tls = {"ca_file": ca.file.name}  # relative: taken from the policy directory
    if with_client_certificate:
        tls |= {"cert_file": str(client.cert), "key_file": str(client.key)}
    _one_tls_backend(policies, tls)
    port = policies.ports["vllm-paris"]
    simulate = [
        sys.executable, "-m", "gateway", "simulate", "--policy-dir", str(policies.path),
        "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.file),
    ]  # fmt: skip
    with process(simulate, log=tmp_path / "sim.log"):
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with run_gateway(
            policies.path, tmp_path / "gw.log", health_probe_interval_s=0.2, log_level="warning"
        ) as gw:
            time.sleep(1.0)  # probes ran: a backend whose probes fail would be taken out
            answer = httpx.post(
                gw.v1 + "/chat/completions",
                headers={"authorization": f"Bearer {demo_key('fr-public-body')}"},
                json={
                    "model": "mistral-small",
                    "messages": [{"role": "user", "content": "Bonjour"}],
                },
                timeout=30,
            )
    if with_client_certificate:
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-sovereign-deployment"] == "mistral-small@vllm-paris"
    else:  # the backend wants a client certificate: refused, and said so in the OpenAI shape
        assert answer.status_code in (502, 503), answer.text
        assert answer.json()["error"]["message"]


def test_a_missing_backend_certificate_stops_the_start_up_naming_the_backend(
    tmp_path: Path,
) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    _one_tls_backend(policies, {"ca_file": "missing-ca.crt"})
    done = sovereign_gateway("policy", "check", policies.path)
    assert done.returncode == 0, done.stdout  # the catalog itself is valid
    env = {
        **os.environ,
        "SGW_AUDIT_STORE": f"sqlite:{tmp_path / 'a.sqlite3'}",
        "SGW_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "k.pem"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", str(free_port()), "--policy-dir", str(policies.path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "backend vllm-paris: its `tls` files cannot be used" in done.stderr


def test_a_catalog_tls_entry_without_https_is_refused(tmp_path: Path) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")

    def change(catalog: dict[str, dict[str, dict[str, object]]]) -> None:
        catalog["backends"]["vllm-paris"]["tls"] = {"ca_file": "ca.crt"}

    policies.edit_catalog(change)
    done = sovereign_gateway("policy", "check", policies.path)
    assert done.returncode == 1
    assert "`tls` needs an https:// base_url" in done.stdout + done.stderr
    assert yaml.safe_load((policies.path / "catalog.yaml").read_text())["backends"]["vllm-paris"][
        "tls"
    ]
