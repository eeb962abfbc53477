"""Providers through litellm: Anthropic's Messages API, Azure OpenAI's deployment URLs, AWS
Bedrock's Converse API (SigV4, binary event streams) and Vertex AI's Gemini API (service-account
OAuth), each on a local server that speaks its wire format. litellm's translation really runs;
nothing leaves the machine."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openai.types.chat import ChatCompletionChunk

from gateway.dev.demo import demo_key
from tests.harness import (
    Gateway,
    PolicyDir,
    error_body,
    free_port,
    process,
    run_gateway,
    run_simulators,
    wait_http,
)

KEY_VARIABLE = "SGW_TEST_ANTHROPIC_API_KEY"
PROVIDER_KEY = "anthropic-test-key-never-logged"
AWS_KEY_ID = "AKIASIMULATEDKEY0001"
AWS_SECRET = "simulated-aws-secret-key-never-logged"
ACME = demo_key("acme-dev")
ADMIN = "sk-sgw-admin0003-test-secret-admin0003"
ENVIRONMENT = {
    KEY_VARIABLE: PROVIDER_KEY,
    "SGW_TEST_AWS_ACCESS_KEY_ID": AWS_KEY_ID,
    "SGW_TEST_AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    # an ambient endpoint override must not move Bedrock traffic off the catalog's URL
    "AWS_BEDROCK_RUNTIME_ENDPOINT": "http://127.0.0.1:9",
}


class Providers(NamedTuple):
    gw: Gateway
    anthropic: str
    azure: str
    bedrock: str
    vertex: str
    root: Path
    policies: PolicyDir


def service_account(path: Path, token_uri: str) -> None:
    """A Google service account with a fresh RSA key, whose token endpoint is the local server."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "sovereign-test",
        "private_key_id": "sim-key-1",
        "private_key": pem,
        "client_email": "gateway@sovereign-test.iam.gserviceaccount.com",
        "client_id": "1000000000001",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(account))


def _backends(ports: dict[str, int]) -> dict[str, Any]:
    def url(name: str) -> str:
        return f"http://127.0.0.1:{ports[name]}"

    return {
        "anthropic-api": {
            "kind": "litellm",
            "provider": "anthropic",
            "base_url": url("anthropic"),
            "api_key_env": KEY_VARIABLE,
            "country": "US",
            "operator": {"name": "Anthropic PBC", "jurisdiction": "US"},
            "apis": ["chat"],
        },
        "azure-api": {
            "kind": "litellm",
            "provider": "azure",
            "base_url": url("azure"),
            "api_key_env": KEY_VARIABLE,
            "api_version": "2024-10-21",
            "country": "SE",
            "operator": {
                "name": "Microsoft Ireland Operations Ltd",
                "jurisdiction": "IE",
                "parents": [{"name": "Microsoft Corporation", "jurisdiction": "US"}],
            },
            "apis": ["chat", "embeddings"],
        },
        "bedrock-api": {
            "kind": "litellm",
            "provider": "bedrock",
            "base_url": url("bedrock"),
            "region": "eu-central-1",
            "credentials_env": {
                "aws_access_key_id": "SGW_TEST_AWS_ACCESS_KEY_ID",
                "aws_secret_access_key": "SGW_TEST_AWS_SECRET_ACCESS_KEY",
            },
            "country": "DE",
            "operator": {
                "name": "Amazon Web Services EMEA SARL",
                "jurisdiction": "LU",
                "parents": [{"name": "Amazon.com Inc.", "jurisdiction": "US"}],
            },
            "apis": ["chat"],
        },
        "vertex-api": {
            "kind": "litellm",
            "provider": "vertex_ai",
            "base_url": url("vertex"),
            "region": "europe-west4",
            "project": "sovereign-test",
            "credentials_env": {"vertex_credentials": "SGW_TEST_VERTEX_CREDENTIALS"},
            "country": "NL",
            "operator": {
                "name": "Google Cloud EMEA Ltd",
                "jurisdiction": "IE",
                "parents": [{"name": "Alphabet Inc.", "jurisdiction": "US"}],
            },
            "apis": ["chat"],
        },
    }


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    root = tmp_path_factory.mktemp("litellm")
    ports = {name: free_port() for name in ("anthropic", "azure", "bedrock", "vertex")}
    policies = PolicyDir.from_examples(root / "policies")
    account = root / "vertex-service-account.json"
    service_account(account, f"http://127.0.0.1:{ports['vertex']}/token")

    def add(catalog: dict[str, Any]) -> None:
        catalog["backends"].update(_backends(ports))
        catalog["models"]["claude-haiku"] = {"developer": "Anthropic", "developer_country": "US"}
        catalog["models"]["claude-3-7-sonnet"] = {
            "developer": "Anthropic",
            "developer_country": "US",
        }
        catalog["models"]["gemini-flash"] = {"developer": "Google", "developer_country": "US"}
        catalog["models"]["text-embedding-3-small"] = {"developer": "OpenAI"}
        catalog["deployments"] += [
            {"model": "gpt-4o", "backend": "azure-api", "upstream_model": "gpt4o-sweden"},
            {
                "model": "claude-haiku",
                "backend": "anthropic-api",
                "upstream_model": "claude-3-5-haiku-latest",
            },
            {
                "model": "claude-3-7-sonnet",
                "backend": "bedrock-api",
                "upstream_model": "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            },
            {
                "model": "gemini-flash",
                "backend": "vertex-api",
                "upstream_model": "gemini-2.0-flash",
            },
            {
                "model": "text-embedding-3-small",
                "backend": "azure-api",
                "upstream_model": "te3-small-sweden",
            },
        ]

    policies.edit_catalog(add)
    assert policies.add_key("admin0003", None, role="admin") == ADMIN
    environment = {**ENVIRONMENT, "SGW_TEST_VERTEX_CREDENTIALS": str(account)}
    os.environ.update(environment)
    servers = [
        ("anthropic", [str(ports["anthropic"])]),
        ("azure", [str(ports["azure"])]),
        ("bedrock", [str(ports["bedrock"])]),
        ("vertex", [str(ports["vertex"]), str(account)]),
    ]
    try:
        with ExitStack() as stack:
            for name, args in servers:
                stack.enter_context(
                    process(
                        [sys.executable, "-m", f"tests.providers.{name}_server", *args],
                        log=root / f"{name}.log",
                    )
                )
            stack.enter_context(run_simulators(policies.path, root / "sim.log"))
            gw = stack.enter_context(
                run_gateway(policies.path, root / "gw.log", health_probe_interval_s=0)
            )
            for port in ports.values():
                wait_http(f"http://127.0.0.1:{port}/_control", 20)
            base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            yield Providers(
                gw,
                base["anthropic"],
                base["azure"],
                base["bedrock"],
                base["vertex"],
                root,
                policies,
            )
    finally:
        for variable in environment:
            del os.environ[variable]


def control(base: str, **fail: Any) -> None:
    httpx.post(base + "/_control", json=fail, timeout=5).raise_for_status()


def received(base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(base + "/_control", timeout=5).json()["received"]
    return found


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=ACME, max_retries=0, timeout=60)


def stream_with_usage(
    gw: Gateway, model: str, content: str
) -> tuple[list[ChatCompletionChunk], str]:
    """A stream asking for the usage chunk: its chunks, and the text they carry."""
    chunks = list(
        client(gw).chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    return chunks, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_chat_completion_through_anthropic(providers: Providers) -> None:
    gw, server = providers.gw, providers.anthropic
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
    providers: Providers,
) -> None:
    gw = providers.gw
    chunks, text = stream_with_usage(gw, "claude-haiku", "stream")
    assert text == "Bonjour from a simulated Claude that answers in small pieces"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    plain = list(
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "stream"}], stream=True
        )
    )
    assert all(c.choices for c in plain)  # the usage chunk the client did not ask for is gone


def test_provider_errors_arrive_in_the_openai_envelope(providers: Providers) -> None:
    gw, server = providers.gw, providers.anthropic
    control(server, status=429, count=1, message="slow down")
    with pytest.raises(openai.RateLimitError) as info:
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert error_body(info.value)["type"] == "rate_limit_error"
    assert "slow down" in error_body(info.value)["message"]
    control(
        server, status=400, count=1, message="prompt is too long: 300000 tokens > 200000 maximum"
    )
    with pytest.raises(openai.BadRequestError) as bad:
        client(gw).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "x"}]
        )
    assert "prompt is too long" in error_body(bad.value)["message"]
    assert PROVIDER_KEY not in str(bad.value.body)


def test_azure_deployment_urls_api_version_and_key(providers: Providers) -> None:
    gw, azure = providers.gw, providers.azure
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
    stream, _ = stream_with_usage(gw, "gpt-4o", "hej")
    assert stream[-1].usage is not None and stream[-1].choices == []


def test_bedrock_converse_signed_with_sigv4_in_the_backends_region(providers: Providers) -> None:
    raw = client(providers.gw).chat.completions.with_raw_response.create(
        model="claude-3-7-sonnet", messages=[{"role": "user", "content": "hallo aus Berlin"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == (
        "Guten Tag from a simulated Bedrock model in Frankfurt today"
    )
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 10)
    assert raw.headers["x-sovereign-deployment"] == "claude-3-7-sonnet@bedrock-api"
    assert raw.headers["x-sovereign-country"] == "DE"
    assert set(raw.http_response.json()) == {"id", "object", "created", "model", "choices", "usage"}
    sent = received(providers.bedrock)[-1]
    assert sent["path"].startswith("/model/eu.anthropic.claude-3-7-sonnet-20250219-v1")
    assert sent["path"].endswith("/converse")
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"text": "hallo aus Berlin"}]}]
    assert sent["signature"] is not None, sent["raw_headers"]
    assert sent["signature"]["key"] == AWS_KEY_ID
    assert sent["signature"]["region"] == "eu-central-1"
    assert sent["signature"]["service"] == "bedrock"
    assert AWS_SECRET not in json.dumps(sent)


def test_bedrock_event_stream_becomes_openai_chunks(providers: Providers) -> None:
    chunks, text = stream_with_usage(providers.gw, "claude-3-7-sonnet", "stream bitte")
    assert text == "Guten Tag from a simulated Bedrock model in Frankfurt today"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 10
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    assert received(providers.bedrock)[-1]["path"].endswith("/converse-stream")


def test_bedrock_throttling_is_a_429_in_the_openai_envelope(providers: Providers) -> None:
    control(providers.bedrock, status=429, count=1, message="Too many requests, please wait")
    with pytest.raises(openai.RateLimitError) as info:
        client(providers.gw).chat.completions.create(
            model="claude-3-7-sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert error_body(info.value)["type"] == "rate_limit_error"
    assert "Too many requests" in error_body(info.value)["message"]
    control(providers.bedrock, status=400, count=1, message="Input is too long for model")
    with pytest.raises(openai.BadRequestError) as bad:
        client(providers.gw).chat.completions.create(
            model="claude-3-7-sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert "Input is too long" in error_body(bad.value)["message"]


def test_vertex_gemini_with_a_service_account_token(providers: Providers) -> None:
    raw = client(providers.gw).chat.completions.with_raw_response.create(
        model="gemini-flash", messages=[{"role": "user", "content": "bonjour de Paris"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == (
        "Bonjour from a simulated Gemini in the Netherlands region now"
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 10)
    assert raw.headers["x-sovereign-deployment"] == "gemini-flash@vertex-api"
    state = httpx.get(providers.vertex + "/_control", timeout=5).json()
    assert state["token_requests"] >= 1  # the JWT grant was signed with the account's key
    sent = state["received"][-1]
    assert sent["authorised"]
    assert (sent["project"], sent["location"]) == ("sovereign-test", "europe-west4")
    assert (sent["model"], sent["method"]) == ("gemini-2.0-flash", "generateContent")
    assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "bonjour de Paris"}]}]


def test_vertex_stream_and_errors(providers: Providers) -> None:
    chunks, text = stream_with_usage(providers.gw, "gemini-flash", "stream")
    assert text == "Bonjour from a simulated Gemini in the Netherlands region now"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    sent = received(providers.vertex)[-1]
    assert (sent["method"], sent["query"].get("alt")) == ("streamGenerateContent", "sse")
    control(providers.vertex, status=429, count=1, message="Resource has been exhausted")
    with pytest.raises(openai.RateLimitError) as info:
        client(providers.gw).chat.completions.create(
            model="gemini-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert "Resource has been exhausted" in error_body(info.value)["message"]


def test_provider_secrets_never_reach_logs_or_answers(providers: Providers) -> None:
    client(providers.gw).chat.completions.create(
        model="claude-3-7-sonnet", messages=[{"role": "user", "content": "x"}]
    )
    log = (providers.root / "gw.log").read_text()
    private_key = json.loads((providers.root / "vertex-service-account.json").read_text())
    for secret in (PROVIDER_KEY, AWS_SECRET, private_key["private_key"].splitlines()[1]):
        assert secret not in log
    assert "litellm_redacted" not in log  # litellm's marks on log records are not our fields


def test_embeddings_through_azure_as_floats_and_as_base64(providers: Providers) -> None:
    gw, azure = providers.gw, providers.azure
    plain = client(gw).embeddings.create(
        model="text-embedding-3-small", input=["un", "deux trois"], encoding_format="float"
    )
    assert [len(d.embedding) for d in plain.data] == [8, 8]
    assert plain.data[1].embedding[0] == 0.125 * len("deux trois")
    assert plain.usage.prompt_tokens == 3
    sent = received(azure)[-1]
    assert sent["path"] == "/openai/deployments/te3-small-sweden/embeddings"
    assert sent["query"]["api-version"] == "2024-10-21"
    assert sent["body"]["input"] == ["un", "deux trois"]
    # the SDK's default asks for base64 and decodes it: the same vectors arrive
    default = client(gw).embeddings.create(
        model="text-embedding-3-small", input=["un", "deux trois"]
    )
    assert received(azure)[-1]["body"]["encoding_format"] == "base64"
    assert [d.embedding for d in default.data] == [d.embedding for d in plain.data]


def test_a_reload_that_moves_a_provider_backend_reaches_it_as_now_described(
    providers: Providers,
) -> None:
    def move(region: str) -> None:
        def edit(catalog: dict[str, Any]) -> None:
            catalog["backends"]["bedrock-api"]["region"] = region

        providers.policies.edit_catalog(edit)
        reloaded = httpx.post(
            providers.gw.base + "/admin/policy/reload",
            headers={"authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        assert reloaded.status_code == 200, reloaded.text

    def region_signed() -> str:
        client(providers.gw).chat.completions.create(
            model="claude-3-7-sonnet", messages=[{"role": "user", "content": "bonjour"}]
        )
        signature = received(providers.bedrock)[-1]["signature"]
        assert signature is not None
        return str(signature["region"])

    assert region_signed() == "eu-central-1"
    move("eu-west-3")
    try:
        assert region_signed() == "eu-west-3"
    finally:
        move("eu-central-1")
