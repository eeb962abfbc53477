"""Who gets into the console and for how long; and what it says about a log edited behind its back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from gateway.dev.demo import demo_key
from tests.console.conftest import ADMIN_KEY, AUDITOR_KEY, SETTINGS, send, sign_in
from tests.harness import Gateway, PolicyDir, run_gateway


def test_a_page_without_a_session_leads_to_the_sign_in_form(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.base + "/console/records?decision=refused")
    expect(page).to_have_url(
        gateway.base + "/console/sign-in?next=%2Fconsole%2Frecords%3Fdecision%3Drefused"
    )
    expect(page.locator("h1")).to_have_text("Compliance console")
    sign_in_after = page.locator("input[name=next]")
    expect(sign_in_after).to_have_value("/console/records?decision=refused")


def test_the_root_leads_to_the_console(gateway: Gateway) -> None:
    r = httpx.get(gateway.base + "/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console"


def test_an_auditor_key_signs_in_for_an_http_only_strict_expiring_session(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway.base, path="/console/records?tenant=eu-bank")
    expect(page).to_have_url(gateway.base + "/console/records?tenant=eu-bank")
    expect(page.locator("header .who")).to_contain_text("demoauditor")
    cookie = next(c for c in page.context.cookies() if c["name"] == "sgw_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP on loopback; over TLS it is Secure
    assert 0 < cookie["expires"] - time.time() <= 8 * 3600 + 305
    assert "demo-key" not in cookie["value"]  # the key itself never goes into the cookie


def test_an_admin_key_signs_in_too(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, ADMIN_KEY)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("header .who")).to_contain_text("demoadmin (admin, read-only)")


def test_a_tenant_key_gets_nothing(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, demo_key("eu-bank"))
    expect(page.locator("#message")).to_contain_text("needs the auditor or admin role")
    assert not [c for c in page.context.cookies() if c["name"] == "sgw_console"]
    page.goto(gateway.base + "/console/records")
    expect(page).to_have_url(gateway.base + "/console/sign-in?next=%2Fconsole%2Frecords")


def test_a_wrong_key_is_refused_with_401(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base) as client:
        form = client.get("/console/sign-in")
        token = form.text.split('name="token" value="')[1].split('"')[0]
        r = client.post("/console/sign-in", data={"api_key": "sk-sgw-nobody-wrong", "token": token})
    assert r.status_code == 401
    assert "This API key is not valid." in r.text
    assert "sgw_console=" not in r.headers.get("set-cookie", "")


def test_sign_in_without_the_form_token_is_refused(gateway: Gateway) -> None:
    r = httpx.post(gateway.base + "/console/sign-in", data={"api_key": AUDITOR_KEY})
    assert r.status_code == 400
    assert "sgw_console=" not in r.headers.get("set-cookie", "")


def test_signing_out_ends_the_session_even_for_a_copied_cookie(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway.base)
    copied = next(c for c in page.context.cookies() if c["name"] == "sgw_console")["value"]
    page.click("text=Sign out")
    expect(page.locator("#message")).to_have_text("You have signed out.")
    r = httpx.get(
        gateway.base + "/console", cookies={"sgw_console": copied}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "ended=signed_out" in r.headers["location"]


def test_pages_are_not_cached_and_cannot_be_framed(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base)
    response = page.goto(gateway.base + "/console/records")
    assert response is not None
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.fixture(scope="module")
def short_gateway(
    gateway: Gateway, policies: PolicyDir, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A second gateway on the same backends, with two-second console sessions and a store of
    its own that a test may tamper with."""
    logs = tmp_path_factory.mktemp("short")
    with run_gateway(policies.path, logs / "gateway.log", console_session_s=2, **SETTINGS) as gw:
        for _ in range(3):
            send(gw, "eu-bank", "mistral-small", None)
        yield gw


def test_the_session_expires(page: Page, short_gateway: Gateway) -> None:
    sign_in(page, short_gateway.base)
    expect(page.locator("h1")).to_have_text("Overview")
    time.sleep(2.5)
    page.goto(short_gateway.base + "/console/records")
    expect(page.locator("#message")).to_have_text("Your session has expired. Please sign in again.")
    page.fill("#api_key", AUDITOR_KEY)
    page.click("form[action='/console/sign-in'] button[type=submit]")
    expect(page).to_have_url(short_gateway.base + "/console/records")


@pytest.fixture(scope="module")
def tampered_gateway(
    gateway: Gateway, policies: PolicyDir, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A third gateway on the same backends, whose store a test edits behind its back."""
    logs = tmp_path_factory.mktemp("tampered")
    with run_gateway(policies.path, logs / "gateway.log", **SETTINGS) as gw:
        for _ in range(3):
            send(gw, "eu-bank", "mistral-small", None)
        time.sleep(0.6)  # a checkpoint covers the records
        yield gw


def test_verify_now_names_an_edited_record(page: Page, tampered_gateway: Gateway) -> None:
    store = tampered_gateway.log.with_suffix(".audit.sqlite3")
    with sqlite3.connect(store) as db:
        body = db.execute("SELECT body FROM audit_records WHERE seq = 1").fetchone()[0]
        edited = bytes(body).replace(b'"tenant":"eu-bank"', b'"tenant":"eu-bonk"')
        assert edited != bytes(body)
        db.execute("UPDATE audit_records SET body = ? WHERE seq = 1", (edited,))
    sign_in(page, tampered_gateway.base, path="/console/integrity")
    page.click("#verify-now")
    result = page.locator("#verification")
    expect(result).to_contain_text("NOT verified")
    expect(result).to_contain_text("edited")
    page.goto(tampered_gateway.base + "/console/records")
    page.locator("#records tbody tr", has_text="eu-bonk").locator("text=Details").click()
    expect(page.locator("#proof-result")).to_contain_text("NOT verified")
