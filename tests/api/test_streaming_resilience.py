"""What a client notices when backends fail: failover before the first byte, an error after it,
and an upstream request cancelled when the client goes away."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.harness import ClientFor, Gateway, Sim

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def test_failover_to_next_eligible_deployment_on_5xx(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    sims["vllm-frankfurt"].configure(fail_status=500, fail_count=1)
    raw = client_for().chat.completions.with_raw_response.create(
        model="llama-3.1-8b", messages=MESSAGES
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-sovereign-deployment"] in {
        "llama-3.1-8b@scaleway-paris",
        "llama-3.1-8b@ionos-berlin",
    }
    assert sims["vllm-frankfurt"].state()["fail_count"] == 0


def test_failover_for_streams_happens_before_the_first_byte(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    sims["vllm-frankfurt"].configure(fail_status=502, fail_count=1)
    stream = client_for().chat.completions.create(
        model="llama-3.1-8b", messages=MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_failover_never_leaves_the_eligible_set(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    # secret class: only the two self-hosted backends are eligible; both fail
    for name in ("vllm-paris", "vllm-frankfurt"):
        sims[name].configure(fail_status=500, fail_count=10)
    before = {n: s.state()["received"] for n, s in sims.items()}
    with pytest.raises(openai.InternalServerError):
        client_for("eu-bank").chat.completions.create(
            model="mistral-small",
            messages=MESSAGES,
            extra_headers={"x-data-classification": "secret"},
        )
    after = {n: s.state()["received"] for n, s in sims.items()}
    touched = {n for n in sims if after[n] != before[n]}
    assert touched == {"vllm-paris", "vllm-frankfurt"}


def test_stream_reset_midway_raises_in_the_client(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    sims["mistral-ai"].configure(reset_after_chunks=3)
    stream = client_for().chat.completions.create(
        model="mistral-medium", messages=MESSAGES, stream=True
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) >= 1, "the error should come after the first chunks, not instead of them"


def test_client_disconnect_cancels_the_upstream_request(
    gateway: Gateway, keys: dict[str, str], sims: dict[str, Sim]
) -> None:
    sim = sims["mistral-ai"]
    sim.configure(token_interval_s=0.2, output_tokens=200)
    served = sim.state()["served"]  # what earlier tests had this backend finish
    body = {"model": "mistral-medium", "messages": MESSAGES, "stream": True, "max_tokens": 200}
    with httpx.stream(
        "POST",
        gateway.v1 + "/chat/completions",
        json=body,
        timeout=10,
        headers={"authorization": f"Bearer {keys['acme-dev']}"},
    ) as response:
        assert response.status_code == 200
        next(response.iter_raw())
        assert sim.state()["running"] == 1
    deadline = time.monotonic() + 3
    while sim.state()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.state()["running"] == 0, "the upstream kept generating after the client left"
    assert sim.state()["served"] == served
