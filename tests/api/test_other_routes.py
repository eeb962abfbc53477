"""Completions, embeddings, responses, health and readiness."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.harness import ClientFor, Gateway, error_body


def test_completions(client_for: ClientFor) -> None:
    reply = client_for().completions.create(model="mistral-small", prompt="Once upon", max_tokens=4)
    assert len(reply.choices[0].text.split()) == 4
    assert reply.usage is not None and reply.usage.completion_tokens == 4


def test_completions_stream(client_for: ClientFor) -> None:
    chunks = list(
        client_for().completions.create(
            model="mistral-small", prompt="Once upon", max_tokens=5, stream=True
        )
    )
    assert len("".join(c.choices[0].text for c in chunks if c.choices).split()) == 5
    assert all(c.choices for c in chunks)


def test_embeddings_float_and_base64_agree(client_for: ClientFor) -> None:
    client = client_for("fr-public-body")
    as_base64 = client.embeddings.create(model="bge-m3", input=["bonjour", "salut"])  # SDK default
    as_float = client.embeddings.create(
        model="bge-m3", input=["bonjour", "salut"], encoding_format="float"
    )
    assert len(as_base64.data) == 2
    for a, b in zip(as_base64.data, as_float.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert as_float.usage.prompt_tokens == 2


def test_responses_route_where_upstream_supports_it(client_for: ClientFor) -> None:
    reply = client_for("fr-public-body").responses.create(model="mistral-small", input="Bonjour")
    assert reply.output_text


def test_responses_route_refused_clearly_where_not_supported(client_for: ClientFor) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client_for().responses.create(model="mistral-medium", input="Hello")
    assert info.value.status_code == 501
    assert error_body(info.value)["code"] == "not_implemented"


def test_health_and_ready_need_no_key(gateway: Gateway) -> None:
    assert httpx.get(gateway.base + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.base + "/ready")
    assert ready.status_code == 200
    assert ready.json()["policy_revision"].startswith("sha256:")
