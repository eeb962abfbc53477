"""Live reload, as an admin does it: edit a file, send SIGHUP, or call the admin API.

Two gateways share one set of simulated backends: one polls its policy directory every 0.2 s,
the other never polls, so SIGHUP and the admin API are seen on their own.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.dev.demo import demo_key
from tests.harness import (
    Gateway,
    PolicyDir,
    Sim,
    run_gateway,
    run_simulators,
    sovereign_gateway,
)

SETTINGS = {"log_level": "warning", "first_byte_timeout_s": 1.5, "idle_timeout_s": 2.0}
ACME = demo_key("acme-dev")
FR = demo_key("fr-public-body")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[PolicyDir, Path]:
    watched = PolicyDir.from_examples(tmp_path_factory.mktemp("reload") / "watched")
    assert watched.add_key("admin0001", None, role="admin") == ADMIN
    still = watched.path.parent / "still"
    shutil.copytree(watched.path, still)  # same ports: both gateways reach the same simulators
    return watched, still


@pytest.fixture(scope="module")
def gateways(
    dirs: tuple[PolicyDir, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    watched, still = dirs
    logs = tmp_path_factory.mktemp("reload-logs")
    with (
        run_simulators(watched.path, logs / "sim.log"),
        run_gateway(
            watched.path, logs / "watched.log", policy_watch_interval_s=0.2, **SETTINGS
        ) as a,
        run_gateway(still, logs / "still.log", policy_watch_interval_s=0, **SETTINGS) as b,
    ):
        yield a, b


ADMIN = "sk-sgw-admin0001-test-secret-admin0001"


@pytest.fixture
def originals(dirs: tuple[PolicyDir, Path], gateways: tuple[Gateway, Gateway]) -> Iterator[None]:
    """Every test starts from the example policies and leaves them, and both gateways, so."""
    watched, still = dirs
    saved = {p: p.read_text() for d in (watched.path, still) for p in d.rglob("*.yaml")}
    revisions = [revision(gw) for gw in gateways]
    yield
    for path, text in saved.items():
        path.write_text(text)
    wait_for(lambda: revision(gateways[0]) == revisions[0])
    assert admin(gateways[1], "POST", "/admin/policy/reload").json()["revision"] == revisions[1]


def reloads(gw: Gateway) -> dict[str, int]:
    found: dict[str, int] = admin(gw, "GET", "/admin/policy").json()["reloads"]
    return found


def admin(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, gw.base + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30, **kw
    )


def chat(gw: Gateway, key: str, model: str) -> httpx.Response:
    return httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def revision(gw: Gateway) -> str:
    found: str = admin(gw, "GET", "/admin/policy").json()["revision"]
    return found


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def restrict_acme(path: Path, extra: str = "") -> None:
    tenant = path / "tenants" / "acme-dev.yaml"
    tenant.write_text(tenant.read_text() + "rules: {inference_country: {deny: [US]}}\n" + extra)


@pytest.mark.usefixtures("originals")
def test_a_file_change_applies_without_restart(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    gw, _ = gateways
    before = revision(gw)
    assert chat(gw, ACME, "gpt-4o").status_code == 200
    restrict_acme(dirs[0].path, "limits: {requests_per_minute: 100000}\n")
    wait_for(lambda: revision(gw) != before)
    refused = chat(gw, ACME, "gpt-4o")
    # Azure in Sweden is still allowed, the US endpoint is not
    assert refused.status_code == 200 and refused.headers["x-sovereign-country"] == "SE"
    state = admin(gw, "GET", "/admin/policy").json()
    assert state["last_reload"]["trigger"] == "file_change" and state["last_reload"]["ok"]
    assert refused.headers["x-sovereign-policy-revision"] == state["revision"]


@pytest.mark.usefixtures("originals")
def test_an_invalid_file_never_replaces_the_policy_in_force(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    gw, _ = gateways
    before = revision(gw)
    failed = reloads(gw)["failed"]
    # would open gpt-4o to the public body, but does not validate
    tenant = dirs[0].path / "tenants" / "fr-public-body.yaml"
    tenant.write_text(tenant.read_text().split("rules:")[0] + "rules: {self_hostd: true}\n")
    wait_for(lambda: reloads(gw)["failed"] > failed)
    state = admin(gw, "GET", "/admin/policy").json()
    assert state["revision"] == before
    assert state["last_reload"]["ok"] is False
    assert any(
        "tenants/fr-public-body.yaml:" in p and "rules.self_hostd: unknown field" in p
        for p in state["last_reload"]["problems"]
    )
    denied = chat(gw, FR, "gpt-4o")
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "policy_violation"
    assert chat(gw, FR, "mistral-small").status_code == 200


@pytest.mark.usefixtures("originals")
def test_sighup_reloads(gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]) -> None:
    _, gw = gateways
    before = revision(gw)
    restrict_acme(dirs[1])
    time.sleep(0.5)
    assert revision(gw) == before  # this gateway does not poll
    assert chat(gw, ACME, "gpt-4o").headers["x-sovereign-policy-revision"] == before
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: revision(gw) != before)
    assert admin(gw, "GET", "/admin/policy").json()["last_reload"]["trigger"] == "sighup"
    assert gw.proc.poll() is None  # SIGHUP reloads, it does not stop the gateway


@pytest.mark.usefixtures("originals")
def test_a_reload_adds_and_disables_api_keys(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    """An admin adds a key, then revokes it, and sends SIGHUP each time: no restart."""
    _, gw = gateways
    key = PolicyDir(dirs[1]).add_key("newkey01", "acme-dev")
    assert chat(gw, key, "mistral-small").status_code == 401  # this gateway does not poll
    done = reloads(gw)["ok"]
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(gw)["ok"] > done)
    assert chat(gw, key, "mistral-small").status_code == 200
    keys_file = dirs[1] / "keys.yaml"
    data = yaml.safe_load(keys_file.read_text())
    next(k for k in data["keys"] if k["id"] == "newkey01")["disabled"] = True
    keys_file.write_text(yaml.safe_dump(data))
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(gw)["ok"] > done + 1)
    revoked = chat(gw, key, "mistral-small")
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"
    assert chat(gw, ACME, "mistral-small").status_code == 200


@pytest.mark.usefixtures("originals")
def test_a_broken_keys_file_keeps_the_keys_and_the_policy_in_force(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    gw, _ = gateways
    before, failed = revision(gw), reloads(gw)["failed"]
    restrict_acme(dirs[0].path)  # a valid policy change, in the same reload as the bad keys
    keys_file = dirs[0].path / "keys.yaml"
    keys_file.write_text(keys_file.read_text().replace("sha256:", "sha265:", 1))
    wait_for(lambda: reloads(gw)["failed"] > failed)
    state = admin(gw, "GET", "/admin/policy").json()
    assert state["revision"] == before and state["last_reload"]["ok"] is False
    assert any(
        re.match(r"keys\.yaml:\d+: error: keys\.0\.sha265: unknown field", p)
        for p in state["last_reload"]["problems"]
    ), state["last_reload"]["problems"]
    assert chat(gw, ACME, "gpt-4o").status_code == 200  # the old keys, the old policy


@pytest.mark.usefixtures("originals")
def test_a_key_listed_twice_refuses_the_reload(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    """A second entry with `disabled: true` would leave the first in force: the reload is refused
    and says where, and the policy and the keys in force stay."""
    gw, _ = gateways
    before, failed = revision(gw), reloads(gw)["failed"]
    restrict_acme(dirs[0].path)  # a valid policy change, in the same reload as the bad keys
    keys_file = dirs[0].path / "keys.yaml"
    data = yaml.safe_load(keys_file.read_text())
    acme = next(k for k in data["keys"] if k["id"] == "demoacme")
    data["keys"].append({**acme, "disabled": True})
    keys_file.write_text(yaml.safe_dump(data, sort_keys=False))
    wait_for(lambda: reloads(gw)["failed"] > failed)
    state = admin(gw, "GET", "/admin/policy").json()
    assert state["revision"] == before and state["last_reload"]["ok"] is False
    assert any(
        re.match(
            r"keys\.yaml:\d+: error: keys\.\d+\.id: this key id demoacme is already listed at"
            r" line \d+ \(keys\.\d+, key id demoacme\)",
            p,
        )
        for p in state["last_reload"]["problems"]
    ), state["last_reload"]["problems"]
    assert chat(gw, ACME, "gpt-4o").status_code == 200  # the old keys, the old policy


@pytest.mark.usefixtures("originals")
def test_admin_reload_and_its_refusal(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    _, gw = gateways
    before = revision(gw)
    catalog = dirs[1] / "catalog.yaml"
    good = catalog.read_text()
    catalog.write_text(good.replace("country: SE", "country: XX"))
    bad = admin(gw, "POST", "/admin/policy/reload")
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "policy_invalid" and error["revision"] == before
    assert any("catalog.yaml:" in p and "'XX' is not ISO 3166-1" in p for p in error["problems"])
    catalog.write_text(good)
    restrict_acme(dirs[1])
    ok = admin(gw, "POST", "/admin/policy/reload")
    assert ok.status_code == 200
    assert ok.json()["changed"] is True and ok.json()["previous_revision"] == before


def test_admin_endpoints_need_the_admin_role(gateways: tuple[Gateway, Gateway]) -> None:
    gw, _ = gateways
    assert httpx.get(gw.base + "/admin/policy").status_code == 401
    as_tenant = httpx.post(
        gw.base + "/admin/policy/reload", headers={"authorization": f"Bearer {ACME}"}
    )
    assert as_tenant.status_code == 403
    assert as_tenant.json()["error"]["type"] == "permission_error"
    # and an admin key is not a tenant key
    assert chat(gw, ADMIN, "mistral-small").status_code == 403


def test_admin_explain_is_the_cli_explanation(gateways: tuple[Gateway, Gateway]) -> None:
    import json

    from tests.harness import EXAMPLE_POLICIES

    gw, _ = gateways
    query = {
        "tenant": "eu-bank",
        "model": "chat-default",
        "data_class": "secret",
        "at": "2026-11-23",
    }
    api = admin(gw, "GET", "/admin/policy/explain", params=query)
    assert api.status_code == 200
    cli = sovereign_gateway(
        "policy",
        "explain",
        EXAMPLE_POLICIES,
        "--tenant",
        "eu-bank",
        "--model",
        "chat-default",
        "--data-class",
        "secret",
        "--at",
        "2026-11-23",
        "--json",
    )
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    from_api = api.json()
    # same decision and the same words; only the revision differs (ports were moved)
    from_cli.pop("policy_revision"), from_api.pop("policy_revision")
    assert from_api == from_cli
    unknown = admin(gw, "GET", "/admin/policy/explain", params={**query, "data_class": "SECRET"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_data_class"


@pytest.mark.usefixtures("originals")
def test_a_stream_in_flight_finishes_under_its_revision(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    gw, _ = gateways
    sim = Sim(dirs[0].ports["openai-us"])
    sim.configure(token_interval_s=0.1, output_tokens=20)
    try:
        client = openai.OpenAI(base_url=gw.v1, api_key=ACME, max_retries=0, timeout=20)
        before = revision(gw)
        # the US endpoint is acme's second choice; make it the only one for this request
        sweden = Sim(dirs[0].ports["azure-sweden"])
        sweden.configure(fail_status=503, fail_count=1)
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            assert response.headers["x-sovereign-deployment"] == "gpt-4o@openai-us"
            restrict_acme(dirs[0].path)
            wait_for(lambda: revision(gw) != before)
            chunks = list(response.parse())
        usage = chunks[-1].usage
        # the stream ran to its normal end, usage chunk included, after the reload
        assert usage is not None and usage.completion_tokens >= 10
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] is not None
        assert response.headers["x-sovereign-policy-revision"] == before
        sweden.configure(fail_status=503, fail_count=1)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 503 or info.value.status_code == 502
    finally:
        sim.reset()
        Sim(dirs[0].ports["azure-sweden"]).reset()


@pytest.mark.usefixtures("originals")
def test_a_reload_stops_further_attempts_at_once(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    """A request waiting on its first choice does not fail over to a deployment that a reload
    has just made ineligible."""
    gw, _ = gateways
    sweden, us = Sim(dirs[0].ports["azure-sweden"]), Sim(dirs[0].ports["openai-us"])
    sweden.configure(hang=True)
    received = us.state()["received"]
    try:

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                pending = asyncio.create_task(
                    client.post(
                        gw.v1 + "/chat/completions",
                        headers={"authorization": f"Bearer {ACME}"},
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                    )
                )
                await asyncio.sleep(0.3)
                restrict_acme(dirs[0].path)
                return await pending

        answer = asyncio.run(scenario())
        # the first choice timed out; the US endpoint, no longer allowed, was never tried
        assert answer.status_code == 504
        assert us.state()["received"] == received
    finally:
        sweden.reset()


@pytest.mark.usefixtures("originals")
def test_reload_under_load_never_allows_what_was_denied(
    gateways: tuple[Gateway, Gateway], dirs: tuple[PolicyDir, Path]
) -> None:
    gw, _ = gateways
    tenant = dirs[0].path / "tenants" / "fr-public-body.yaml"
    valid = tenant.read_text().replace("requests_per_minute: 600", "requests_per_minute: 100000")
    assert valid != tenant.read_text()
    first = revision(gw)
    tenant.write_text(valid)
    wait_for(lambda: revision(gw) != first)
    # loosened but invalid: if it were ever loaded, gpt-4o would be allowed
    invalid = (
        valid.split("rules:")[0] + "rules: {inference_country: {allow: [EEA]}, selfhosted: true}\n"
    )
    # valid and harmless: a comment changes the revision
    variants = [invalid, valid + "# touched\n", invalid, valid]
    statuses: dict[str, list[int]] = {"gpt-4o": [], "mistral-small": []}

    async def load(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not stop.is_set():
                for model, seen in statuses.items():
                    r = await client.post(
                        gw.v1 + "/chat/completions",
                        headers={"authorization": f"Bearer {FR}"},
                        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                    )
                    seen.append(r.status_code)

    async def scenario() -> None:
        stop = asyncio.Event()
        workers = [asyncio.create_task(load(stop)) for _ in range(4)]
        for text in variants * 3:
            tenant.write_text(text)
            await asyncio.sleep(0.35)
        stop.set()
        await asyncio.gather(*workers)

    before = reloads(gw)
    asyncio.run(scenario())
    after = reloads(gw)
    assert len(statuses["gpt-4o"]) > 50
    assert set(statuses["gpt-4o"]) == {403}
    assert set(statuses["mistral-small"]) == {200}
    # the invalid versions were seen and refused, the valid ones applied
    assert after["failed"] - before["failed"] >= 3 and after["ok"] - before["ok"] >= 3
