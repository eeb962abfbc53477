"""The audit log as compliance teams meet it: behind a running gateway, through the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from gateway.dev.demo import demo_key
from tests.audit.conftest import ADMIN_DSN
from tests.harness import (
    Gateway,
    PolicyDir,
    Sim,
    run_gateway,
    run_simulators,
    sovereign_gateway,
)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return sovereign_gateway("audit", *args)


def store_of(gateway: Gateway) -> str:
    return f"sqlite:{gateway.log.with_suffix('.audit.sqlite3')}"


def records(store: str, *args: str) -> list[dict[str, Any]]:
    done = cli("query", "--store", store, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def chat(gw: Gateway, tenant: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key(tenant)}", **extra.pop("headers", {})},
        json={"model": model, "messages": [{"role": "user", "content": "audit me"}], **extra},
        timeout=30,
    )


def stream_chat(
    gw: Gateway, model: str = "mistral-small", **extra: Any
) -> contextlib.AbstractContextManager[httpx.Response]:
    return httpx.stream(
        "POST",
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
        json={
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
            **extra,
        },
        timeout=30,
    )


def by_request(store: str, request_id: str) -> dict[str, Any]:
    [found] = [r for r in records(store) if r["request_id"] == request_id]
    return found


def test_a_served_request_is_recorded_with_where_it_ran_and_why(gateway: Gateway) -> None:
    answer = chat(gateway, "eu-bank", "chat-default", headers={"x-data-classification": "secret"})
    assert answer.status_code == 200
    record = by_request(store_of(gateway), answer.headers["x-request-id"])
    assert record["decision"] == "allowed" and record["status"] == 200
    assert record["decision_id"] == answer.headers["x-sovereign-decision-id"]
    assert record["policy_revision"] == answer.headers["x-sovereign-policy-revision"]
    assert record["tenant"] == "eu-bank" and record["key_id"] == "demoeubank"
    assert record["requested_model"] == "chat-default"
    assert record["models"] == ["mistral-small", "llama-3.1-8b"]
    assert record["data_class"] == "secret"
    dep = record["deployment"]
    assert dep["id"] == answer.headers["x-sovereign-deployment"]
    assert dep["inference_country"] in {"FR", "DE"}
    assert dep["operator_control_chain"] and dep["weights_origin"] == "FR"
    assert record["attempts"][-1]["outcome"] == "ok"
    assert record["usage"]["completion_tokens"] > 0
    # eu-bank's audit mode is `hash`: keyed hashes, never the text
    assert set(record["content"]) == {"mode", "request_hmac", "response_hmac"}
    assert "audit me" not in orjson.dumps(record).decode()


def test_a_refusal_is_recorded_with_the_failing_rules(gateway: Gateway) -> None:
    answer = chat(gateway, "fr-public-body", "gpt-4o")
    assert answer.status_code == 403
    record = by_request(store_of(gateway), answer.headers["x-request-id"])
    assert record["decision"] == "refused" and record["status"] == 403
    assert record["deployment"] is None
    failed = {c["deployment"]: c["failed_rules"] for c in record["refusal"]["candidates"]}
    assert "inference_country" in failed["gpt-4o@openai-us"]
    assert record["decision_id"] == answer.json()["error"]["decision_id"]


def test_content_modes_full_and_none(gateway: Gateway) -> None:
    full = chat(gateway, "research-lab", "eurollm-9b")
    none = chat(gateway, "acme-dev", "mistral-small")
    store = store_of(gateway)
    kept = by_request(store, full.headers["x-request-id"])["content"]
    assert kept["mode"] == "full" and "audit me" in kept["request"]
    assert orjson.loads(kept["response"])["choices"]
    assert "content" not in by_request(store, none.headers["x-request-id"])


def test_a_stream_is_recorded_before_it_ends(gateway: Gateway) -> None:
    with stream_chat(gateway) as response:
        body = b"".join(response.iter_bytes())
        request_id = response.headers["x-request-id"]
    assert body.endswith(b"data: [DONE]\n\n")
    record = by_request(store_of(gateway), request_id)
    assert record["stream"] is True and record["usage"]["completion_tokens"] > 0


def test_keys_never_reach_the_audit_store(gateway: Gateway) -> None:
    chat(gateway, "eu-bank", "mistral-small")
    path = gateway.log.with_suffix(".audit.sqlite3")
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for tenant in ("eu-bank", "acme-dev", "fr-public-body", "research-lab"):
        secret = demo_key(tenant).encode()
        assert secret not in stored
        assert secret.split(b"-")[-1] not in stored or b"secret" in secret


def test_the_live_log_verifies_and_the_report_shows_it(gateway: Gateway, tmp_path: Path) -> None:
    import time

    chat(gateway, "acme-dev", "gpt-4o")
    time.sleep(1.0)  # a checkpoint every 0.5 s covers it
    store = store_of(gateway)
    key = tmp_path / "pub.pem"
    signing = gateway.log.with_suffix(".signing-key.pem")
    done = cli("public-key", "--signing-key", signing)
    assert done.returncode == 0
    key.write_text(done.stdout)
    export = tmp_path / "all.jsonl"
    assert cli("export", "--store", store, "--out", export).returncode == 0
    verified = cli("verify", export, "--public-key", key)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[-1].startswith("verified: ")
    report = cli("report", "--store", store, "--public-key", key, "--html", tmp_path / "r.html")
    assert report.returncode == 0
    assert "Where inference ran (country)" in report.stdout and ": verified (" in report.stdout
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page
    refusals = records(store, "--decision", "refused", "--rule", "inference_country")
    assert refusals and all(r["decision"] == "refused" for r in refusals)
    table = cli("query", "--store", store, "--country", "SE")
    assert "gpt-4o@azure-sweden" in table.stdout
    csv_out = cli("query", "--store", store, "--format", "csv", "--tenant", "acme-dev")
    assert csv_out.stdout.splitlines()[0].startswith("time,tenant,requested_model")


# ---- strict mode on PostgreSQL ------------------------------------------------------------------


@pytest.fixture
def pg_gateway(postgres: str, tmp_path: Path) -> Any:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    with (
        run_simulators(policies.path, tmp_path / "sim.log"),
        run_gateway(
            policies.path,
            tmp_path / "gw.log",
            audit_store=postgres,
            audit_checkpoint_interval_s=0.3,
            log_level="warning",
        ) as gw,
    ):
        yield gw, policies, postgres.rsplit("/", 1)[-1]


async def _set_login(role: str, allowed: bool) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f"ALTER ROLE {role} {'LOGIN' if allowed else 'NOLOGIN'}")
        if not allowed:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
    finally:
        await conn.close()


def test_when_the_store_is_down_nothing_is_forwarded(pg_gateway: Any) -> None:
    import time

    gw, policies, role = pg_gateway
    sim = Sim(policies.ports["vllm-paris"])
    assert chat(gw, "fr-public-body", "mistral-small").status_code == 200
    asyncio.run(_set_login(role, False))
    try:
        # the first request finds the store gone; after that the gateway refuses up front
        statuses = []
        received = sim.state()["received"]
        for _ in range(5):
            answer = chat(gw, "fr-public-body", "mistral-small")
            statuses.append(answer.status_code)
        assert set(statuses) == {503}
        error = answer.json()["error"]
        assert error["code"] == "audit_unavailable" and answer.headers["retry-after"] == "5"
        assert sim.state()["received"] - received <= 1  # at most the request that found it down
    finally:
        asyncio.run(_set_login(role, True))
    deadline = time.monotonic() + 10
    while chat(gw, "fr-public-body", "mistral-small").status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not recover with its store"
        time.sleep(0.2)


# ---- kill -9 under load -------------------------------------------------------------------------


async def _load(base: str, seconds: float, ok: list[str]) -> None:
    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                r = await client.post(
                    base + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
                    json={"model": "mistral-small", "messages": [{"role": "user", "content": "k"}]},
                )
            except httpx.HTTPError:
                return  # the gateway died
            if r.status_code == 200:
                ok.append(r.headers["x-request-id"])

    async with httpx.AsyncClient(timeout=10) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(8)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_kill_9_loses_no_answered_request(tmp_path: Path) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    store = f"sqlite:{tmp_path / 'audit.sqlite3'}"
    settings = {
        "audit_store": store,
        "audit_log_id": "replica-k",
        "audit_signing_key_file": tmp_path / "key.pem",
        "log_level": "warning",
    }
    rng = random.Random(9)
    answered: list[str] = []
    with run_simulators(policies.path, tmp_path / "sim.log"):
        for round_ in range(6):
            with run_gateway(policies.path, tmp_path / f"gw{round_}.log", **settings) as gw:
                ok: list[str] = []

                async def round_trip(gw: Gateway = gw, ok: list[str] = ok) -> None:
                    loader = asyncio.create_task(_load(gw.base, 5.0, ok))
                    await asyncio.sleep(rng.uniform(0.3, 1.2))
                    gw.proc.send_signal(signal.SIGKILL)
                    await loader

                asyncio.run(round_trip())
                gw.proc.wait()
                answered += ok
    assert len(answered) > 100
    logged = records(store)
    ids = [r["request_id"] for r in logged]
    missing = set(answered) - set(ids)
    assert not missing, f"{len(missing)} answered requests are not in the log"
    assert [r["seq"] for r in logged] == list(range(len(logged)))  # no gap, no duplicate
    key = tmp_path / "pub.pem"
    key.write_text(cli("public-key", "--signing-key", tmp_path / "key.pem").stdout)
    export = tmp_path / "log.jsonl"
    assert cli("export", "--store", store, "--out", export).returncode == 0
    verified = cli("verify", export, "--public-key", key)
    assert verified.returncode == 0, verified.stdout


# ---- the auditor API ----------------------------------------------------------------------------

AUDITOR = "sk-sgw-demoauditor-demo-key-not-a-secret"


def test_the_auditor_api_serves_records_proofs_and_the_key(
    gateway: Gateway, tmp_path: Path
) -> None:
    import time

    from gateway.audit.signing import load_public_key
    from gateway.audit.verify import verify_export

    refused = chat(gateway, "fr-public-body", "gpt-4o")
    time.sleep(1.0)  # let a checkpoint cover it
    auth = {"authorization": f"Bearer {AUDITOR}"}

    def get(path: str, **params: str) -> httpx.Response:
        return httpx.get(gateway.base + path, headers=auth, params=params, timeout=30)

    found = get("/audit/records", tenant="fr-public-body", decision="refused").json()["data"]
    assert refused.headers["x-request-id"] in {r["request_id"] for r in found}
    key = load_public_key(get("/audit/public-key").content)
    latest = get("/audit/checkpoints/latest").json()
    assert latest["size"] >= 1 and latest["log_id"]
    export = get("/audit/export", tenant="fr-public-body")
    lines = export.content.splitlines()
    assert verify_export(lines, key).ok
    assert all(b'"tenant":"fr-public-body"' in x for x in lines if b'"type":"record"' in x)
    report = get("/audit/report").json()
    assert report["refusals_by_tenant"]["fr-public-body"] >= 1
    # a tenant key, and no key, get nothing
    tenant = httpx.get(
        gateway.base + "/audit/records", headers={"authorization": f"Bearer {demo_key('acme-dev')}"}
    )
    assert tenant.status_code == 403
    assert httpx.get(gateway.base + "/audit/records").status_code == 401


def test_a_client_that_leaves_while_its_stream_is_being_recorded_gets_one_record(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    """Once the upstream stream has ended, a client leaving changes nothing: the one record says
    what the gateway relayed (the final `[DONE]` waits for the commit, which another session's
    write lock, taken once the stream's admission is recorded, holds back here)."""
    store = store_of(gateway)
    lock = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(token_interval_s=0.05)
    with stream_chat(gateway) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        next(lines)  # the first event: the admission record is in
        lock.execute("BEGIN IMMEDIATE")
        try:
            for line in lines:  # everything up to the last event before [DONE]
                if '"finish_reason":"' in line.replace(" ", ""):
                    break
            time.sleep(0.3)  # the upstream ends; its record waits for the lock
            response.close()
            time.sleep(0.5)  # the client is gone while the record waits for the lock
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    found = settled_records(store, request_id)
    assert len(found) == 1, found
    record = found[0]
    assert record["kind"] == "completed" and len(record["seqs"]) == 2
    assert record["status"] == 200 and record["usage"]["completion_tokens"] > 0


def test_a_client_that_leaves_mid_generation_is_recorded_once_as_closed(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    sims["mistral-ai"].configure(token_interval_s=0.2, output_tokens=200)
    with stream_chat(gateway, "mistral-medium", max_tokens=200) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_raw())
    found = settled_records(store_of(gateway), request_id)
    assert len(found) == 1, found
    assert found[0]["status"] == 499


def settled_records(store: str, request_id: str) -> list[dict[str, Any]]:
    """The records of one request, once the first is in and a second would have followed."""
    deadline = time.monotonic() + 10
    while not [r for r in records(store) if r["request_id"] == request_id]:
        assert time.monotonic() < deadline, "the request was never recorded"
        time.sleep(0.2)
    time.sleep(1)
    return [r for r in records(store) if r["request_id"] == request_id]


# ---- no token without a record ------------------------------------------------------------------


def wait_until_recording(gw: Gateway) -> None:
    deadline = time.monotonic() + 15
    while chat(gw, "acme-dev", "mistral-small").status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not come back with its store"
        time.sleep(0.2)


def test_no_token_reaches_the_client_before_its_admission_is_recorded(gateway: Gateway) -> None:
    """With the store unable to commit (another session holds its write lock), a stream is
    refused with 503 before any token; nothing of the model's answer was delivered."""
    store = store_of(gateway)
    lock = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        with stream_chat(gateway) as response:
            body = response.read()
        took = time.monotonic() - began
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert response.status_code == 503, body[:300]
    assert b"data:" not in body and orjson.loads(body)["error"]["code"] == "audit_unavailable"
    assert took < 5
    wait_until_recording(gateway)


def test_a_stream_whose_final_record_fails_keeps_its_admission_and_ends_with_an_error(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    store = store_of(gateway)
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(token_interval_s=0.1, output_tokens=20)
    lock = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
    events: list[str] = []
    try:
        with stream_chat(gateway) as response:
            request_id = response.headers["x-request-id"]
            lines = response.iter_lines()
            events.append(next(lines))  # admitted: now the store stops taking records
            lock.execute("BEGIN IMMEDIATE")
            events.extend(line for line in lines if line)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    assert "audit_unavailable" in events[-1] and events[-1].startswith("data: {")
    assert "data: [DONE]" not in events
    wait_until_recording(gateway)
    found = [r for r in records(store) if r["request_id"] == request_id]
    assert len(found) == 1
    [record] = found
    assert record["seqs"][0] is not None and record["deployment"] is not None
    assert record["status"] != 200 or record["kind"] == "admitted", record
