"""Providers through litellm: Anthropic's Messages API and Azure OpenAI's deployment URLs, each on
a local server that speaks its wire format. litellm's translation really runs; nothing leaves
the machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.demo import demo_key, free_port
from tests.harness import Gateway, PolicyDir, process, run_gateway, run_simulators, wait_http

KEY_VARIABLE = "SGW_TEST_ANTHROPIC_API_KEY"
PROVIDER_KEY = "anthropic-test-key-never-logged"
ACME = demo_key("acme-dev")


@pytest.fixture(scope="module")
def anthropic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str, str]]:
    root = tmp_path_factory.mktemp("litellm")
    port, azure_port = free_port(), free_port()
    policies = PolicyDir.from_examples(root / "policies")

    def add(catalog: dict[str, Any]) -> None:
        catalog["backends"]["anthropic-api"] = {
            "kind": "litellm",
            "provider": "anthropic",
            "base_url": f"http://127.0.0.1:{port}",
            "api_key_env": KEY_VARIABLE,
            "country": "US",
            "operator": {"name": "Anthropic PBC", "jurisdiction": "US"},
            "apis": ["chat"],
        }
        catalog["backends"]["azure-api"] = {
            "kind": "litellm",
            "provider": "azure",
            "base_url": f"http://127.0.0.1:{azure_port}",
            "api_key_env": KEY_VARIABLE,
            "api_version": "2024-10-21",
            "country": "SE",
            "operator": {
                "name": "Microsoft Ireland Operations Ltd",
                "jurisdiction": "IE",
                "parents": [{"name": "Microsoft Corporation", "jurisdiction": "US"}],
            },
            "apis": ["chat"],
        }
        catalog["deployments"].append(
            {
                "model": "gpt-4o",
                "backend": "azure-api",
                "upstream_model": "gpt4o-sweden",
                "priority": 0,
            }
        )
        catalog["models"]["claude-haiku"] = {"developer": "Anthropic", "developer_country": "US"}
        catalog["deployments"].append(
            {
                "model": "claude-haiku",
                "backend": "anthropic-api",
                "upstream_model": "claude-3-5-haiku-latest",
            }
        )

    policies.edit_catalog(add)
    os.environ[KEY_VARIABLE] = PROVIDER_KEY
    try:
        with (
            process(
                [sys.executable, "-m", "tests.providers.anthropic_server", str(port)],
                log=root / "anthropic.log",
            ),
            process(
                [sys.executable, "-m", "tests.providers.azure_server", str(azure_port)],
                log=root / "azure.log",
            ),
            run_simulators(policies.path, root / "sim.log"),
            run_gateway(policies.path, root / "gw.log", health_probe_interval_s=0) as gw,
        ):
            wait_http(f"http://127.0.0.1:{port}/_control", 20)
            wait_http(f"http://127.0.0.1:{azure_port}/_control", 20)
            yield gw, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{azure_port}"
    finally:
        del os.environ[KEY_VARIABLE]


def control(base: str, **fail: Any) -> None:
    httpx.post(base + "/_control", json=fail, timeout=5).raise_for_status()


def received(base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(base + "/_control", timeout=5).json()["received"]
    return found


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=ACME, max_retries=0, timeout=60)


def test_a_chat_completion_through_anthropic(anthropic: tuple[Gateway, str, str]) -> None:
    gw, server, _ = anthropic
    raw = client(gw).chat.completions.with_raw_response.create(
        model="claude-haiku", messages=[{"role": "user", "content": "say hello please"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == (
        "Bonjour from a simulated Claude that answers in small pieces"
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 10
    assert raw.headers["x-sovereign-deployment"] == "claude-haiku@anthropic-api"
    body = raw.http_response.json()
    assert "provider_specific_fields" not in str(body)
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    sent = received(server)[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["model"] == "claude-3-5-haiku-latest"
    assert sent["headers"]["x-api-key"] == PROVIDER_KEY
    # translated to Anthropic's content blocks, with Anthropic's required max_tokens
    assert sent["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "say hello please"}]}
    ]
    assert sent["body"]["max_tokens"] > 0 and sent["headers"]["anthropic-version"]


def test_a_stream_through_anthropic_with_and_without_usage(
    anthropic: tuple[Gateway, str, str],
) -> None:
    gw, _, _ = anthropic
    chunks = list(
        client(gw).chat.completions.create(
            model="claude-haiku",
            messages=[{"role": "user", "content": "stream"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Bonjour from a simulated Claude that answers in small pieces"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    plain = list(
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "stream"}], stream=True
        )
    )
    assert all(c.choices for c in plain)  # the usage chunk the client did not ask for is gone


def test_provider_errors_arrive_in_the_openai_envelope(anthropic: tuple[Gateway, str, str]) -> None:
    gw, server, _ = anthropic
    control(server, status=429, count=1, message="slow down")
    with pytest.raises(openai.RateLimitError) as info:
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["type"] == "rate_limit_error"
    assert "slow down" in info.value.body["message"]
    control(
        server, status=400, count=1, message="prompt is too long: 300000 tokens > 200000 maximum"
    )
    with pytest.raises(openai.BadRequestError) as bad:
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "x"}]
        )
    assert "prompt is too long" in bad.value.body["message"]
    assert PROVIDER_KEY not in str(bad.value.body)


def test_azure_deployment_urls_api_version_and_key(anthropic: tuple[Gateway, str, str]) -> None:
    gw, _, azure = anthropic
    # acme's gpt-4o: the litellm Azure deployment is one of its first-tier choices
    seen = set()
    for _ in range(4):
        raw = client(gw).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hej"}]
        )
        seen.add(raw.headers["x-sovereign-deployment"])
        if raw.headers["x-sovereign-deployment"] == "gpt-4o@azure-api":
            answer = raw.http_response.json()
            assert answer["choices"][0]["message"]["content"] == (
                "Hej from a simulated Azure deployment in Sweden"
            )
            assert "prompt_filter_results" not in answer and "deployment" not in answer
            assert "content_filter_results" not in answer["choices"][0]
    assert "gpt-4o@azure-api" in seen
    sent = httpx.get(azure + "/_control", timeout=5).json()["received"][-1]
    assert sent["path"] == "/openai/deployments/gpt4o-sweden/chat/completions"
    assert sent["query"]["api-version"] == "2024-10-21"
    assert sent["api_key"] == PROVIDER_KEY
    stream = list(
        client(gw).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hej"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert stream[-1].usage is not None and stream[-1].choices == []
