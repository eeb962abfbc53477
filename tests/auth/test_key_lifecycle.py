"""A key's life against the running gateway: rotated, the new key works from the next reload and
the old one until its grace time ends (then 401 expired_api_key, with no reload); revoked, the key
is refused from the next reload."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, error_body, run_gateway, sovereign_gateway

ADMIN = "sk-sgw-demoadmin-demo-key-not-a-secret"
ACME = demo_key("acme-dev")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, PolicyDir]]:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    # no polling: each reload in the test is the one it asks for
    with run_gateway(
        policies.path, tmp_path / "gateway.log", policy_watch_interval_s=0, log_level="warning"
    ) as gw:
        yield gw, policies


def reload(gw: Gateway) -> None:
    answer = httpx.post(
        gw.base + "/admin/policy/reload", headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status_code == 200 and answer.json()["ok"], answer.text


def models(gw: Gateway, key: str) -> list[str]:
    return [m.id for m in openai.OpenAI(base_url=gw.v1, api_key=key).models.list()]


def refused(gw: Gateway, key: str) -> dict[str, object]:
    with pytest.raises(openai.AuthenticationError) as caught:
        models(gw, key)
    assert caught.value.status_code == 401
    return error_body(caught.value)


def test_rotate_then_revoke(gateway: tuple[Gateway, PolicyDir]) -> None:
    gw, policies = gateway
    before = models(gw, ACME)
    assert before
    done = sovereign_gateway(
        "keys", "rotate", "demoacme", "--grace", "6s", "--policy-dir", policies.path
    )
    assert done.returncode == 0, done.stderr
    new_key = done.stdout.split("store it now): ", 1)[1].split("\n", 1)[0]
    until = dt.datetime.fromisoformat(done.stdout.split("stays valid until ", 1)[1].split()[0])
    assert refused(gw, new_key)["code"] == "invalid_api_key"  # not yet reloaded
    reload(gw)
    assert models(gw, new_key) == before
    assert until > dt.datetime.now(dt.UTC), "the test was too slow for its grace time"
    assert models(gw, ACME) == before

    time.sleep(max(0.0, until.timestamp() - time.time()) + 0.2)
    assert refused(gw, ACME) == {
        "message": f"This API key expired at {until.isoformat().replace('+00:00', 'Z')}: use"
        " the key that replaced it, or ask your administrator for a new one",
        "type": "invalid_request_error",
        "param": None,
        "code": "expired_api_key",
    }
    assert models(gw, new_key) == before

    new_id = new_key.split("-")[2]
    revoked = sovereign_gateway("keys", "revoke", new_id, "--policy-dir", policies.path)
    assert revoked.returncode == 0, revoked.stderr
    assert models(gw, new_key) == before  # until the reload
    reload(gw)
    assert refused(gw, new_key)["code"] == "invalid_api_key"
