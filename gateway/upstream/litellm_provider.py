"""Providers whose API is not OpenAI's (Anthropic, Azure OpenAI, Bedrock, Vertex AI...), reached
through litellm's translation.

litellm is imported on first use only: it costs seconds and memory, so a gateway without a
litellm backend never loads it (and it is told to use its bundled model cost map, never the
network). Requests arrive as OpenAI JSON; answers and stream chunks go back as OpenAI JSON with
litellm's extra fields removed, the usage chunk as `choices: []`, and errors in the OpenAI
envelope with `Retry-After` carried over. Only the backend's `base_url` from the catalog is used
as `api_base`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import (
    NotImplementedByUpstream,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.policy.schema import Backend
from gateway.upstream.base import UpstreamReply

CHAT_PARAMS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "n", "seed",
    "presence_penalty", "frequency_penalty", "tools", "tool_choice", "response_format", "user",
    "logit_bias", "parallel_tool_calls", "stream_options",
)  # fmt: skip
EMBEDDING_PARAMS = ("encoding_format", "dimensions", "user")
MESSAGE_KEYS = ("role", "content", "tool_calls", "refusal")


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def provider_args(base_url: str, backend: Backend) -> tuple[dict[str, str], dict[str, str]]:
    """litellm's arguments for a backend: fixed values, and values read from named variables.

    The catalog's URL is the only endpoint: Bedrock's runtime endpoint is pinned to it too, so an
    `AWS_BEDROCK_RUNTIME_ENDPOINT` in the environment cannot send traffic elsewhere.
    """
    fixed: dict[str, str] = {"api_base": base_url}
    if backend.api_version:
        fixed["api_version"] = backend.api_version
    if backend.provider == "bedrock":
        fixed["aws_bedrock_runtime_endpoint"] = base_url
        if backend.region:
            fixed["aws_region_name"] = backend.region
    elif backend.provider == "vertex_ai":
        if backend.region:
            fixed["vertex_location"] = backend.region
        if backend.project:
            fixed["vertex_project"] = backend.project
    elif not backend.api_key_env:
        # never let litellm pick up a provider key from the ambient environment
        fixed["api_key"] = "unused"
    from_env = {str(k): v for k, v in backend.credentials_env.items()}
    if backend.api_key_env:
        from_env["api_key"] = backend.api_key_env
    return fixed, from_env


class LiteLLMUpstream:
    def __init__(self, name: str, backend: Backend, timeout_s: float) -> None:
        if not backend.provider:
            raise ValueError(f"backend {name} has no litellm provider")
        self.name = name
        self._provider = backend.provider
        self._fixed, self._from_env = provider_args(str(backend.base_url).rstrip("/"), backend)
        self._timeout = timeout_s

    def _call_args(self, data: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {
            **self._fixed,
            "model": f"{self._provider}/{data['model']}",
            "timeout": self._timeout,
            "num_retries": 0,  # failover is the gateway's, inside the tenant's eligible set
        }
        for param, variable in self._from_env.items():
            value = os.environ.get(variable)
            if not value:
                logging.getLogger("gateway.upstream").error(
                    "backend credential missing",
                    extra={"backend": self.name, "variable": variable},
                )
                raise UpstreamError(
                    f"backend {self.name} is not configured", code="upstream_misconfigured"
                )
            args[param] = value
        return args

    async def send(self, path: str, body: bytes) -> UpstreamReply:
        data = orjson.loads(body)
        litellm = _litellm()
        try:
            if path == "/chat/completions":
                result = await litellm.acompletion(
                    messages=data["messages"], **self._call_args(data), **_chat_params(data)
                )
                payload = normalise_completion(result.model_dump())
            elif path == "/embeddings":
                result = await litellm.aembedding(
                    input=data["input"],
                    **self._call_args(data),
                    **{k: data[k] for k in EMBEDDING_PARAMS if k in data},
                )
                payload = normalise_embeddings(result.model_dump())
            else:
                raise NotImplementedByUpstream(f"{self.name} (litellm) does not serve /v1{path}")
        except Exception as exc:
            raise _translate(exc, self.name) from exc
        return UpstreamReply(200, orjson.dumps(payload), "application/json")

    async def stream(self, path: str, body: bytes) -> _LiteLLMStream:
        if path != "/chat/completions":
            raise NotImplementedByUpstream(f"{self.name} (litellm) streams only chat completions")
        data = orjson.loads(body)
        litellm = _litellm()
        try:
            response = await litellm.acompletion(
                messages=data["messages"],
                stream=True,
                **self._call_args(data),
                **_chat_params(data),
            )
        except Exception as exc:
            raise _translate(exc, self.name) from exc
        return _LiteLLMStream(response, self.name)

    async def aclose(self) -> None:
        return None


class _LiteLLMStream:
    def __init__(self, response: Any, name: str) -> None:
        self._response = response
        self._name = name

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response:
                for out in normalise_chunk(chunk.model_dump()):
                    yield b"data: " + orjson.dumps(out) + b"\n\n"
        except Exception as exc:
            raise _translate(exc, self._name) from exc
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        close = getattr(self._response, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # closing a finished provider stream may fail; nothing is lost
                return


def _chat_params(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in CHAT_PARAMS if k in data}


def _usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def _head(data: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "id": data.get("id"),
        "object": kind,
        "created": int(data.get("created") or 0),
        "model": data.get("model"),
    }


def normalise_completion(data: dict[str, Any]) -> dict[str, Any]:
    choices = []
    for choice in data.get("choices") or []:
        message = choice.get("message") or {}
        clean = {k: message[k] for k in MESSAGE_KEYS if message.get(k) is not None}
        clean.setdefault("role", "assistant")
        clean.setdefault("content", None)
        choices.append(
            {
                "index": choice.get("index", 0),
                "message": clean,
                "finish_reason": choice.get("finish_reason"),
                "logprobs": choice.get("logprobs"),
            }
        )
    out = {**_head(data, "chat.completion"), "choices": choices}
    usage = _usage(data.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def normalise_chunk(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One litellm chunk as OpenAI chunks: the content part, then a usage chunk if it has usage."""
    head = _head(data, "chat.completion.chunk")
    choices = []
    for choice in data.get("choices") or []:
        delta = choice.get("delta") or {}
        clean = {k: delta[k] for k in MESSAGE_KEYS if delta.get(k) is not None}
        if clean or choice.get("finish_reason") is not None:
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": clean,
                    "finish_reason": choice.get("finish_reason"),
                    "logprobs": None,
                }
            )
    out: list[dict[str, Any]] = []
    if choices:
        out.append({**head, "choices": choices})
    usage = _usage(data.get("usage"))
    if usage is not None:
        out.append({**head, "choices": [], "usage": usage})
    return out


def normalise_embeddings(data: dict[str, Any]) -> dict[str, Any]:
    items = [
        {"object": "embedding", "index": item.get("index", i), "embedding": item.get("embedding")}
        for i, item in enumerate(data.get("data") or [])
    ]
    out: dict[str, Any] = {"object": "list", "data": items, "model": data.get("model")}
    usage = data.get("usage")
    if isinstance(usage, dict):
        prompt = int(usage.get("prompt_tokens") or 0)
        out["usage"] = {
            "prompt_tokens": prompt,
            "total_tokens": int(usage.get("total_tokens") or prompt),
        }
    return out


def _translate(exc: Exception, name: str) -> Exception:
    """litellm's exceptions as the gateway's errors, in the OpenAI envelope."""
    if isinstance(exc, UpstreamError | NotImplementedByUpstream):
        return exc
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", None) or exc)
    kind = type(exc).__name__
    if kind == "Timeout" or isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{name} timed out")
    if kind == "APIConnectionError" or not isinstance(status, int):
        return UpstreamError(f"cannot reach {name}: {kind}", code="upstream_connect_error")
    code = "context_length_exceeded" if kind == "ContextWindowExceededError" else None
    error_type = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "upstream_error")
    headers = None
    retry_after = None
    for source in (getattr(exc, "litellm_response_headers", None), getattr(exc, "response", None)):
        found = getattr(source, "headers", source)
        if found is not None and hasattr(found, "get") and found.get("retry-after"):
            retry_after = found.get("retry-after")
            break
    if retry_after:
        headers = {"retry-after": str(retry_after)}
    envelope = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return UpstreamStatusError(status, envelope, headers=headers)
