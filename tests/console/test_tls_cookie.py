"""Over TLS (an `https` scope, as uvicorn gives behind `--ssl-*`), the session cookie is Secure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.settings import load_settings
from tests.console.conftest import AUDITOR_KEY
from tests.harness import EXAMPLE_POLICIES


def test_the_session_cookie_is_secure_over_tls(tmp_path: Path) -> None:
    settings = load_settings(
        policy_dir=EXAMPLE_POLICIES,
        audit_store=f"sqlite:{tmp_path / 'audit.sqlite3'}",
        audit_signing_key_file=tmp_path / "key.pem",
        health_probe_interval_s=0,
    )
    app = create_app(settings)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as c:
            form = await c.get("/console/sign-in")
            assert "secure" in form.headers["set-cookie"].lower()
            token = form.text.split('name="token" value="')[1].split('"')[0]
            return await c.post("/console/sign-in", data={"api_key": AUDITOR_KEY, "token": token})

    signed_in = asyncio.run(run())
    assert signed_in.status_code == 303
    cookie = next(
        v for v in signed_in.headers.get_list("set-cookie") if v.startswith("sgw_console=")
    )
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attributes
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
