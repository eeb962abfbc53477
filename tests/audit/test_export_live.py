"""Exports of a running gateway's log cover the request just answered, whether taken over the
auditor API or with the CLI beside it, and a stream still open does not hold an export up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.audit.signing import load_public_key
from gateway.audit.verify import Report, verify_export
from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, Sim, run_gateway, run_simulators, sovereign_gateway

AUDITOR = {"authorization": "Bearer sk-sgw-demoauditor-demo-key-not-a-secret"}


@pytest.fixture(scope="module")
def quiet_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, PolicyDir]]:
    """A gateway that signs no checkpoint of its own after its first (an hour apart)."""
    tmp_path = tmp_path_factory.mktemp("quiet")
    policies = PolicyDir.from_examples(tmp_path / "policies")
    with (
        run_simulators(policies.path, tmp_path / "sim.log"),
        run_gateway(
            policies.path,
            tmp_path / "gw.log",
            audit_checkpoint_interval_s=3600,
            audit_checkpoint_every=100_000,
            log_level="warning",
        ) as gw,
    ):
        yield gw, policies


def chat(gw: Gateway, model: str = "mistral-small") -> str:
    answer = httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
        json={"model": model, "messages": [{"role": "user", "content": "export me"}]},
        timeout=30,
    )
    assert answer.status_code == 200
    return answer.headers["x-request-id"]


def api_export(gw: Gateway, **params: str) -> tuple[list[bytes], Report]:
    key = load_public_key(httpx.get(gw.base + "/audit/public-key", headers=AUDITOR).content)
    found = httpx.get(gw.base + "/audit/export", headers=AUDITOR, params=params, timeout=30)
    assert found.status_code == 200, found.text
    lines = found.content.splitlines()
    return lines, verify_export(lines, key)


def request_ids(lines: list[bytes]) -> list[str]:
    return [
        orjson.loads(x)["record"]["request_id"] for x in lines if x.startswith(b'{"type":"record"')
    ]


def test_the_api_export_covers_the_request_just_answered(
    quiet_gateway: tuple[Gateway, PolicyDir],
) -> None:
    gw, _ = quiet_gateway
    first = chat(gw)
    lines, report = api_export(gw)
    assert report.ok and report.notes == [], (report.failures, report.notes)
    assert request_ids(lines)[-1] == first
    second = chat(gw)
    lines, report = api_export(gw, tenant="acme-dev")
    assert report.ok, report.failures
    assert request_ids(lines)[-2:] == [first, second]


def test_the_cli_export_beside_a_running_gateway_covers_every_record(
    quiet_gateway: tuple[Gateway, PolicyDir], tmp_path: Path
) -> None:
    gw, _ = quiet_gateway
    store = f"sqlite:{gw.log.with_suffix('.audit.sqlite3')}"
    signing = gw.log.with_suffix(".signing-key.pem")
    public = tmp_path / "public.pem"
    public.write_text(sovereign_gateway("audit", "public-key", "--signing-key", signing).stdout)
    asked = [chat(gw) for _ in range(3)]
    out = tmp_path / "log.jsonl"
    done = sovereign_gateway(
        "audit", "export", "--store", store, "--signing-key", signing, "--out", out
    )
    assert done.returncode == 0, done.stderr
    verified = sovereign_gateway("audit", "verify", out, "--public-key", public)
    assert verified.returncode == 0, verified.stdout
    assert request_ids(out.read_bytes().splitlines())[-3:] == asked
    # the gateway's own checkpoints go on from the CLI's: an export over both verifies
    later = chat(gw)
    lines, report = api_export(gw)
    assert report.ok, report.failures
    assert request_ids(lines)[-4:] == [*asked, later]


def test_an_open_stream_does_not_hold_an_export_up_and_is_in_the_next(
    quiet_gateway: tuple[Gateway, PolicyDir],
) -> None:
    gw, policies = quiet_gateway
    Sim(policies.ports["mistral-ai"]).configure(token_interval_s=0.1, output_tokens=30)
    before = chat(gw)
    with httpx.stream(
        "POST",
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
        json={
            "model": "mistral-medium",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        timeout=30,
    ) as response:
        streamed = response.headers["x-request-id"]
        chunks = response.iter_raw()
        next(chunks)  # the stream is under way: its admission is recorded, its end not yet
        lines, report = api_export(gw)
        assert report.ok and report.notes == [], (report.failures, report.notes)
        assert request_ids(lines)[-2:] == [before, streamed]
        assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    lines, report = api_export(gw)
    assert report.ok, report.failures
    assert request_ids(lines)[-3:] == [before, streamed, streamed]  # admitted, then completed
