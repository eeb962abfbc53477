"""The console in a real browser: Debian's Chromium driven headless by playwright.

Playwright never downloads a browser here: it is pointed at /usr/bin/chromium, which `make test`
installs. A gateway with simulated backends gets known traffic first (served, refused, secret data),
so every page has something to show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, run_gateway, run_simulators

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AUDITOR_KEY = "sk-sgw-demoauditor-demo-key-not-a-secret"
ADMIN_KEY = "sk-sgw-demoadmin-demo-key-not-a-secret"
SETTINGS: dict[str, Any] = {
    "log_level": "warning",
    "audit_checkpoint_interval_s": 0.3,
    "health_probe_interval_s": 0,
    "policy_watch_interval_s": 0,
}
# (tenant, model, data class) -> what the policy says
TRAFFIC = [
    ("eu-bank", "mistral-small", None, "served"),
    ("eu-bank", "gpt-4o", None, "refused"),
    ("eu-bank", "llama-3.1-8b", "secret", "refused"),
    ("fr-public-body", "mistral-small", None, "served"),
    ("fr-public-body", "gpt-4o", None, "refused"),
    ("acme-dev", "gpt-4o", None, "served"),
]


def send(gateway: Gateway, tenant: str, model: str, data_class: str | None) -> str:
    client = openai.OpenAI(base_url=gateway.v1, api_key=demo_key(tenant), max_retries=0)
    headers = {"x-data-classification": data_class} if data_class else None
    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Bonjour"}],
            max_tokens=4,
            extra_headers=headers,
        )
    except openai.PermissionDeniedError:
        return "refused"
    return "served"


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> PolicyDir:
    return PolicyDir.from_examples(tmp_path_factory.mktemp("console") / "policies")


@pytest.fixture(scope="module")
def gateway(policies: PolicyDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("console-logs")
    with (
        run_simulators(policies.path, logs / "sim.log"),
        run_gateway(policies.path, logs / "gateway.log", **SETTINGS) as gw,
    ):
        for tenant, model, data_class, expected in TRAFFIC * 2:
            assert send(gw, tenant, model, data_class) == expected, (tenant, model)
        yield gw


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium package"
    found = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield found
    found.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile with JavaScript off: the console must work without it."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, java_script_enabled=False)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, base: str, key: str = AUDITOR_KEY, path: str = "/console") -> None:
    page.goto(base + path)
    page.fill("#api_key", key)
    page.click("form[action='/console/sign-in'] button[type=submit]")
