"""What a hostile or careless client sends: repeated headers, wrong types, oversized names,
floods of invalid requests, and clients that leave before their answer."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway.dev.demo import demo_key
from tests.audit.test_gateway_audit import records, settled_records, store_of
from tests.harness import ClientFor, Gateway, Sim, error_body

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _post(
    gateway: Gateway, headers: list[tuple[str, str]], body: dict[str, Any] | bytes
) -> httpx.Response:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return httpx.post(
        gateway.v1 + "/chat/completions",
        content=content,
        headers=[("content-type", "application/json"), *headers],
        timeout=20,
    )


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    return error


def test_two_data_classes_are_refused_not_resolved(gateway: Gateway) -> None:
    """`secret` then `public`: the last one used to win, serving the request under `public`."""
    auth = ("authorization", f"Bearer {demo_key('eu-bank')}")
    body = {"model": "mistral-small", "messages": MESSAGES}
    for classes in (("secret", "public"), ("public", "secret")):
        response = _post(gateway, [auth, *(("x-data-classification", c) for c in classes)], body)
        assert response.status_code == 400, response.text
        error = _error(response)
        assert error["code"] == "duplicate_header"
        assert error["param"] == "x-data-classification"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/admin/policy"),
        ("GET", "/audit/records"),
    ],
)
def test_two_authorization_headers_are_refused_on_every_route(
    gateway: Gateway, method: str, path: str
) -> None:
    headers = [
        ("authorization", "Bearer sk-sgw-demoadmin-demo-key-not-a-secret"),
        ("authorization", "Bearer sk-sgw-demoauditor-demo-key-not-a-secret"),
        ("content-type", "application/json"),
    ]
    response = httpx.request(
        method,
        gateway.base + path,
        headers=headers,
        content=b'{"model": "mistral-small", "input": "x"}' if method == "POST" else None,
        timeout=20,
    )
    assert response.status_code == 400, response.text
    assert _error(response)["code"] == "duplicate_header"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("stream", "true", "a boolean"),
        ("stream", 1, "a boolean"),
        ("stream_options", "include_usage", "an object"),
        ("model", 42, "a string"),
        ("model", ["mistral-small"], "a string"),
        ("n", "2", "an integer"),
        ("n", True, "an integer"),
        ("n", 1.5, "an integer"),
    ],
)
def test_fields_the_gateway_reads_must_have_their_type(
    gateway: Gateway, sims: dict[str, Sim], field: str, value: Any, expected: str
) -> None:
    before = len(sims["vllm-paris"].state()["requests"])
    body: dict[str, Any] = {"model": "mistral-small", "messages": MESSAGES, field: value}
    response = _post(gateway, [("authorization", f"Bearer {demo_key('acme-dev')}")], body)
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["code"] == "invalid_type"
    assert error["param"] == field
    assert expected in error["message"]
    assert len(sims["vllm-paris"].state()["requests"]) == before  # nothing was forwarded


def test_fields_it_does_not_read_pass_through_untouched(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    client_for().chat.completions.create(
        model="mistral-small",
        messages=MESSAGES,
        stream=False,
        n=1,
        extra_body={"top_k": "an odd value", "user": ["not", "a", "string"]},
    )
    sent = sims["vllm-paris"].last_request()["body"]
    assert sent["top_k"] == "an odd value"
    assert sent["user"] == ["not", "a", "string"]


def test_an_oversized_model_name_is_refused_without_an_echo(gateway: Gateway) -> None:
    model = "m" * 60_000  # (the test gateway's body limit is 64 KiB)
    body = {"model": model, "messages": MESSAGES}
    response = _post(gateway, [("authorization", f"Bearer {demo_key('acme-dev')}")], body)
    assert response.status_code == 400
    assert _error(response)["param"] == "model"
    assert len(response.content) < 1000
    store = store_of(gateway)
    found = records(store, "--tenant", "acme-dev")
    assert all(len(r.get("requested_model") or "") <= 256 for r in found)
    assert all(len(str(r)) < 20_000 for r in found)
    assert model[:300] not in gateway.log.read_text()


def test_an_oversized_data_class_is_refused_without_an_echo(gateway: Gateway) -> None:
    headers = [
        ("authorization", f"Bearer {demo_key('eu-bank')}"),
        ("x-data-classification", "s" * 20_000),
    ]
    response = _post(gateway, headers, {"model": "mistral-small", "messages": MESSAGES})
    assert response.status_code == 400
    assert len(response.content) < 1000


def test_a_model_outside_the_allow_list_answers_like_an_unknown_one(client_for: ClientFor) -> None:
    """fr-public-body may not use claude-sonnet at all: it learns nothing of where it runs."""
    client = client_for("fr-public-body")
    with pytest.raises(openai.NotFoundError) as outside:
        client.chat.completions.create(model="claude-sonnet", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="claude-sonnez", messages=MESSAGES)
    body, reference = error_body(outside.value), error_body(unknown.value)
    assert body["code"] == reference["code"] == "model_not_found"
    assert body["message"] == reference["message"].replace("claude-sonnez", "claude-sonnet")
    assert set(body) == set(reference)
    assert "bedrock" not in outside.value.response.text


def test_invalid_requests_count_against_the_request_limit(
    gateway: Gateway, keys: dict[str, str]
) -> None:
    """The `flooder` tenant has 2 requests a minute: unknown models and bad bodies spend them."""
    auth = ("authorization", f"Bearer {keys['flooder']}")
    statuses = [
        _post(gateway, [auth], {"model": f"unknown-{i}", "messages": MESSAGES}).status_code
        for i in range(4)
    ]
    statuses.append(_post(gateway, [auth], b"not json").status_code)
    assert statuses[:2] == [404, 404]
    assert statuses[2:] == [429, 429, 429]


def test_a_client_that_leaves_before_its_answer_cancels_the_upstream(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    sims["mistral-ai"].configure(ttft_s=3)
    request_id = f"leaves-early-{time.monotonic_ns()}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.v1 + "/chat/completions",
            json={"model": "mistral-medium", "messages": MESSAGES},
            headers={"authorization": f"Bearer {demo_key('acme-dev')}", "x-request-id": request_id},
            timeout=0.5,
        )
    [record] = settled_records(store_of(gateway), request_id)
    assert record["status"] == 499
    assert record["duration_us"] < 2_500_000  # closed when the client left, not when answered


def test_a_stream_whose_client_leaves_before_the_first_byte_is_recorded_as_closed(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    sims["mistral-ai"].configure(ttft_s=3)
    request_id = f"stream-leaves-early-{time.monotonic_ns()}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.v1 + "/chat/completions",
            json={"model": "mistral-medium", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {demo_key('acme-dev')}", "x-request-id": request_id},
            timeout=0.5,
        )
    [record] = settled_records(store_of(gateway), request_id)
    assert record["status"] == 499
    assert record["duration_us"] < 2_500_000
