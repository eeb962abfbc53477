"""Every failure comes in OpenAI's error envelope with the status the SDK maps to its exceptions."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.harness import ClientFor, Gateway, Sim, error_body

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _envelope(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


def _post(
    gateway: Gateway, key: str, content: bytes, path: str = "/v1/chat/completions"
) -> httpx.Response:
    return httpx.post(
        gateway.base + path,
        content=content,
        timeout=10,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )


def test_bad_json_is_400(gateway: Gateway, keys: dict[str, str]) -> None:
    response = _post(gateway, keys["acme-dev"], b'{"model": "mistral-small",')
    assert response.status_code == 400
    assert _envelope(response)["code"] == "invalid_json"
    assert response.headers["x-request-id"]


def test_missing_model_is_400(gateway: Gateway, keys: dict[str, str]) -> None:
    response = _post(gateway, keys["acme-dev"], b'{"messages": []}')
    assert response.status_code == 400
    assert _envelope(response)["param"] == "model"


def test_wrong_key_is_401(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="sk-sgw-demoacme-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="mistral-small", messages=MESSAGES)
    assert error_body(info.value)["code"] == "invalid_api_key"
    assert "sk-sgw-demoacme-wrong" not in info.value.message


def test_missing_key_is_401(gateway: Gateway) -> None:
    response = httpx.get(gateway.v1 + "/models")
    assert response.status_code == 401
    assert _envelope(response)["code"] == "invalid_api_key"


def test_policy_refusal_is_403_with_reasons(client_for: ClientFor) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client_for("fr-public-body").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    body = error_body(info.value)
    assert body["type"] == "policy_violation"
    assert body["decision_id"].startswith("dec_")
    failed = {c["deployment"]: {f["rule"] for f in c["failed"]} for c in body["candidates"]}
    assert "operator_control" in failed["gpt-4o@azure-sweden"]
    assert "inference_country" in failed["gpt-4o@openai-us"]


def test_unknown_model_is_404(client_for: ClientFor) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client_for().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert error_body(info.value)["code"] == "model_not_found"


def test_unknown_path_is_404_in_openai_shape(gateway: Gateway) -> None:
    response = httpx.get(gateway.base + "/v1/nothing-here")
    assert response.status_code == 404
    _envelope(response)


def test_body_over_limit_is_413(gateway: Gateway, keys: dict[str, str]) -> None:
    big = (
        b'{"model": "mistral-small", "messages": [{"role": "user", "content": "'
        + b"x" * 70000
        + b'"}]}'
    )
    response = _post(gateway, keys["acme-dev"], big)
    assert response.status_code == 413
    assert _envelope(response)["code"] == "request_too_large"


def test_rate_limit_is_429_with_retry_after(gateway: Gateway, keys: dict[str, str]) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=keys["limited"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(5):
            client.chat.completions.create(model="mistral-small", messages=MESSAGES)
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_backend_down_is_502(client_for: ClientFor) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client_for().chat.completions.create(model="ghost", messages=MESSAGES)
    assert info.value.status_code == 502
    assert error_body(info.value)["code"] == "upstream_connect_error"


def test_upstream_503_is_passed_on(client_for: ClientFor, sims: dict[str, Sim]) -> None:
    sims["mistral-ai"].configure(fail_status=503, fail_count=5)
    with pytest.raises(openai.APIStatusError) as info:
        client_for().chat.completions.create(model="mistral-medium", messages=MESSAGES)
    assert info.value.status_code == 503


def test_an_upstream_499_is_passed_on_not_taken_for_a_client_that_left(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    """499 is also the status the gateway records for a client that left; an upstream's own 499
    is still an answer, sent with its body."""
    sims["mistral-ai"].configure(fail_status=499, fail_count=5)
    with pytest.raises(openai.APIStatusError) as info:
        client_for().chat.completions.create(model="mistral-medium", messages=MESSAGES)
    assert info.value.status_code == 499
    assert error_body(info.value)["message"] == "simulated failure"
    assert info.value.response.headers["x-request-id"]


def test_upstream_silence_is_504_within_the_deadline(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    sims["mistral-ai"].configure(hang=True)
    began = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client_for().chat.completions.create(model="mistral-medium", messages=MESSAGES)
    assert info.value.status_code == 504
    assert time.monotonic() - began < 5


def test_vllm_flat_error_body_is_normalised(client_for: ClientFor, sims: dict[str, Sim]) -> None:
    sims["mistral-ai"].configure(error_style="flat", max_model_len=10)
    with pytest.raises(openai.BadRequestError) as info:
        client_for().chat.completions.create(
            model="mistral-medium", messages=MESSAGES, max_tokens=50
        )
    assert "maximum context length" in error_body(info.value)["message"]
    assert error_body(info.value)["type"] == "BadRequestError"
    sims["mistral-ai"].configure(max_model_len=4096)


def test_context_length_error_never_moves_to_another_deployment(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(max_model_len=10)
    before = {n: s.state()["received"] for n, s in sims.items()}
    with pytest.raises(openai.BadRequestError):
        client_for("eu-bank").chat.completions.create(
            model="mistral-small",
            messages=MESSAGES,
            max_tokens=50,
            extra_headers={"x-data-classification": "secret"},
        )
    after = {n: s.state()["received"] for n, s in sims.items()}
    moved = {n: after[n] - before[n] for n in sims if after[n] != before[n]}
    assert list(moved.values()) == [1], f"the request went to more than one deployment: {moved}"
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(max_model_len=4096)
