"""Chat completions through the official SDK, as an app that only changed base_url sees them."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.harness import AsyncClientFor, ClientFor, Sim

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where does this run?"}]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "search",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def test_chat_answer_says_where_it_ran(client_for: ClientFor) -> None:
    raw = client_for("fr-public-body").chat.completions.with_raw_response.create(
        model="mistral-small", messages=MESSAGES, max_tokens=5
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-sovereign-deployment"] == "mistral-small@vllm-paris"
    assert raw.headers["x-sovereign-country"] == "FR"
    assert raw.headers["x-sovereign-decision-id"].startswith("dec_")


def test_client_request_id_is_echoed(client_for: ClientFor) -> None:
    raw = client_for().chat.completions.with_raw_response.create(
        model="mistral-small", messages=MESSAGES, extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"


def test_upstream_receives_its_own_model_name(client_for: ClientFor, sims: dict[str, Sim]) -> None:
    client_for("fr-public-body").chat.completions.create(model="mistral-small", messages=MESSAGES)
    sent = sims["vllm-paris"].last_request()["body"]
    assert sent["model"] == "mistralai/Mistral-Small-3.1-24B-Instruct-2503"


def test_stream_without_usage_request_gets_no_usage_chunk(
    client_for: ClientFor, sims: dict[str, Sim]
) -> None:
    stream = client_for("fr-public-body").chat.completions.create(
        model="mistral-small", messages=MESSAGES, stream=True, max_tokens=6
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert all(c.choices for c in chunks), (
        "the usage chunk the gateway asked for leaked to the client"
    )
    # the gateway asked the upstream for usage on the client's behalf
    assert sims["vllm-paris"].last_request()["body"]["stream_options"] == {"include_usage": True}


def test_stream_with_usage_request_gets_usage_chunk(client_for: ClientFor) -> None:
    stream = client_for().chat.completions.create(
        model="mistral-small",
        messages=MESSAGES,
        stream=True,
        max_tokens=4,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


@pytest.mark.anyio
async def test_async_client_streams(async_client_for: AsyncClientFor) -> None:
    client = async_client_for("eu-bank")
    stream = await client.chat.completions.create(
        model="chat-default", messages=MESSAGES, stream=True, max_tokens=3
    )
    pieces = [
        c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len("".join(pieces).split()) == 3
    reply = await client.chat.completions.create(model="chat-default", messages=MESSAGES)
    assert reply.choices[0].message.content
    await client.close()


def test_tool_call(client_for: ClientFor) -> None:
    reply = client_for().chat.completions.create(
        model="mistral-small", messages=MESSAGES, tools=TOOLS
    )
    [call] = reply.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"
    assert "query" in json.loads(call.function.arguments)


def test_streamed_tool_call_deltas_assemble(client_for: ClientFor) -> None:
    stream = client_for().chat.completions.create(
        model="mistral-small", messages=MESSAGES, tools=TOOLS, stream=True
    )
    name, args, finish = "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            name += delta.function.name or "" if delta.function else ""
            args += delta.function.arguments or "" if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "lookup"
    assert "query" in json.loads(args)
    assert finish == "tool_calls"


def test_response_format_json(client_for: ClientFor) -> None:
    reply = client_for().chat.completions.create(
        model="mistral-small", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_n_and_logprobs(client_for: ClientFor) -> None:
    reply = client_for().chat.completions.create(
        model="mistral-small", messages=MESSAGES, n=3, logprobs=True, top_logprobs=2, max_tokens=3
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    content = logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 2


def test_vllm_extra_parameters_pass_untouched(client_for: ClientFor, sims: dict[str, Sim]) -> None:
    extra = {"top_k": 7, "structured_outputs": {"choice": ["yes", "no"]}, "repetition_penalty": 1.1}
    client_for("fr-public-body").chat.completions.create(
        model="mistral-small", messages=MESSAGES, extra_body=extra
    )
    sent = sims["vllm-paris"].last_request()["body"]
    for key, value in extra.items():
        assert sent[key] == value


@pytest.mark.parametrize("tenant", ["fr-public-body", "eu-bank"])
def test_models_lists_only_what_the_tenant_may_reach(client_for: ClientFor, tenant: str) -> None:
    names = {m.id for m in client_for(tenant).models.list()}
    assert "mistral-small" in names
    assert "gpt-4o" not in names  # US-controlled operator: refused to both
    if tenant == "fr-public-body":
        assert "llama-3.1-8b" not in names  # not in its allow-list


def test_retrieve_model(client_for: ClientFor) -> None:
    assert client_for("eu-bank").models.retrieve("mistral-small").id == "mistral-small"
    with pytest.raises(openai.NotFoundError):
        client_for("fr-public-body").models.retrieve("gpt-4o")
