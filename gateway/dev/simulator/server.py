"""The simulated vLLM HTTP server (aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.dev.simulator.state import SimState
from gateway.dev.simulator.text import embedding_for, prompt_of_messages, token_count, words_for


class SimulatorBindError(Exception):
    """A simulated backend could not listen on its port."""


STATE: web.AppKey[SimState] = web.AppKey("state", SimState)
SSE = "text/event-stream"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(
    state: SimState, status: int, message: str, kind: str, param: str | None = None
) -> web.Response:
    body: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": status}
    if state.config.error_style == "flat":
        return _json({"object": "error", **body}, status)
    return _json({"error": body}, status)


INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "n", "dimensions")


def _invalid_fields(body: dict[str, Any]) -> str | None:
    """vLLM validates the request with pydantic and answers 400 (never 500) to a field of the
    wrong type; its message lists the errors as pydantic gives them."""
    errors = []
    for name in INTEGER_FIELDS:
        value = body.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if isinstance(value, float) and value.is_integer():
            continue
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            continue
        errors.append(
            {
                "type": "int_parsing",
                "loc": ("body", name),
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": value,
            }
        )
    if not errors:
        return None
    return f"{len(errors)} validation error(s): {errors}"


def _chunk(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def _admit(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        state = self.state
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return {}, _error(state, 400, "Invalid JSON body", "BadRequestError")
        state.received += 1
        state.requests.append(
            {
                "path": request.path,
                "body": body,
                "authorization": request.headers.get("authorization"),
            }
        )
        cfg = state.config
        invalid = _invalid_fields(body)
        if invalid is not None:
            return body, _error(state, 400, invalid, "Bad Request")
        if cfg.hang:
            await asyncio.sleep(3600)
        if cfg.fail_count > 0 and cfg.fail_status:
            cfg.fail_count -= 1
            return body, _error(state, cfg.fail_status, "simulated failure", "InternalServerError")
        if cfg.fail_user and body.get("user") == cfg.fail_user:
            failed = _error(state, 500, "simulated failure on this input", "InternalServerError")
            return body, failed
        model = body.get("model")
        if model not in state.models:
            return body, _error(
                state, 404, f"The model `{model}` does not exist.", "NotFoundError", "model"
            )
        if cfg.ttft_s:
            await asyncio.sleep(cfg.ttft_s)
        return body, None

    def _too_long(self, prompt_tokens: int, max_tokens: int) -> web.Response | None:
        limit = self.state.config.max_model_len
        if prompt_tokens + max_tokens > limit:
            return _error(
                self.state,
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages or "
                "completion.",
                "BadRequestError",
                "messages",
            )
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._admit(request)
        if refused is not None:
            return refused
        prompt = prompt_of_messages(body.get("messages"))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        too_long = self._too_long(token_count(prompt), max_tokens)
        if too_long is not None:
            return too_long
        return await self._generate(request, body, prompt, max_tokens, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._admit(request)
        if refused is not None:
            return refused
        prompt = body.get("prompt")
        text = " ".join(prompt) if isinstance(prompt, list) else str(prompt or "")
        max_tokens = int(body.get("max_tokens") or 16)
        too_long = self._too_long(token_count(text), max_tokens)
        if too_long is not None:
            return too_long
        return await self._generate(request, body, text, max_tokens, chat=False)

    async def _generate(
        self, request: web.Request, body: dict[str, Any], prompt: str, max_tokens: int, chat: bool
    ) -> web.StreamResponse:
        state = self.state
        n = int(body.get("n") or 1)
        count = min(max_tokens, state.config.output_tokens)
        choices = [self._choice(body, prompt, count, i, chat) for i in range(n)]
        usage = {
            "prompt_tokens": token_count(prompt),
            "completion_tokens": count * n,
            "total_tokens": token_count(prompt) + count * n,
        }
        meta = {
            "id": ("chatcmpl-" if chat else "cmpl-") + os.urandom(8).hex(),
            "created": int(time.time()),
            "model": body["model"],
        }
        state.running += 1
        try:
            if body.get("stream"):
                return await self._stream(request, body, meta, choices, usage, chat)
            state.served += 1
            obj = "chat.completion" if chat else "text_completion"
            return _json(
                {**meta, "object": obj, "choices": [c["final"] for c in choices], "usage": usage}
            )
        finally:
            state.running -= 1

    def _choice(
        self, body: dict[str, Any], prompt: str, count: int, index: int, chat: bool
    ) -> dict[str, Any]:
        words = words_for(prompt, count, seed=index)
        tools = body.get("tools")
        if chat and tools and body.get("tool_choice") != "none":
            name = tools[0]["function"]["name"]
            args = orjson.dumps({"query": " ".join(words[:3])}).decode()
            call = {
                "id": f"call_{index}_{os.urandom(4).hex()}",
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
            final = {
                "index": index,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
            return {"final": final, "tool_call": call, "pieces": []}
        fmt = body.get("response_format") or {}
        if chat and fmt.get("type") in ("json_object", "json_schema"):
            text = orjson.dumps({"answer": " ".join(words)}).decode()
            pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
        else:
            pieces = [("" if i == 0 else " ") + w for i, w in enumerate(words)]
            text = "".join(pieces)
        logprobs = None
        if chat and body.get("logprobs"):
            top = int(body.get("top_logprobs") or 0)
            logprobs = {
                "content": [
                    {
                        "token": p,
                        "logprob": -0.5,
                        "bytes": list(p.encode()),
                        "top_logprobs": [{"token": p, "logprob": -0.5, "bytes": list(p.encode())}]
                        * top,
                    }
                    for p in pieces
                ]
            }
        if chat:
            final = {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": "length" if pieces else "stop",
            }
        else:
            final = {"index": index, "text": text, "logprobs": None, "finish_reason": "length"}
        return {"final": final, "tool_call": None, "pieces": pieces, "logprobs": logprobs}

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        meta: dict[str, Any],
        choices: list[dict[str, Any]],
        usage: dict[str, Any],
        chat: bool,
    ) -> web.StreamResponse:
        cfg = self.state.config
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        obj = "chat.completion.chunk" if chat else "text_completion"
        base = {**meta, "object": obj}
        sent = 0
        for event in self._events(choices, chat):
            if cfg.reset_after_chunks and sent >= cfg.reset_after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(_chunk({**base, "choices": [event]}))
            sent += 1
            if cfg.token_interval_s:
                await asyncio.sleep(cfg.token_interval_s)
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            await response.write(_chunk({**base, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        self.state.served += 1
        await response.write_eof()
        return response

    def _events(self, choices: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for c in choices:
            i = c["final"]["index"]
            if not chat:
                events += [
                    {"index": i, "text": p, "logprobs": None, "finish_reason": None}
                    for p in c["pieces"]
                ]
                events.append({"index": i, "text": "", "logprobs": None, "finish_reason": "length"})
                continue
            events.append(
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            )
            call = c["tool_call"]
            if call is not None:
                args = call["function"]["arguments"]
                events.append(
                    {
                        "index": i,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            ]
                        },
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
                events += [
                    {
                        "index": i,
                        "delta": {
                            "tool_calls": [{"index": 0, "function": {"arguments": args[k : k + 6]}}]
                        },
                        "logprobs": None,
                        "finish_reason": None,
                    }
                    for k in range(0, len(args), 6)
                ]
                events.append(
                    {"index": i, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
                )
                continue
            lps = (c.get("logprobs") or {}).get("content")
            for k, piece in enumerate(c["pieces"]):
                lp = {"content": [lps[k]]} if lps else None
                events.append(
                    {"index": i, "delta": {"content": piece}, "logprobs": lp, "finish_reason": None}
                )
            events.append(
                {
                    "index": i,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": c["final"]["finish_reason"],
                }
            )
        return events

    async def embeddings(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request)
        if refused is not None:
            return refused
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        dims = int(body.get("dimensions") or 16)
        data = []
        for i, item in enumerate(inputs):
            vector = embedding_for(str(item), dims)
            value: Any = vector
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(token_count(str(x)) for x in inputs)
        self.state.served += 1
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def responses(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request)
        if refused is not None:
            return refused
        raw = body.get("input")
        prompt = raw if isinstance(raw, str) else prompt_of_messages(raw)
        words = words_for(prompt, self.state.config.output_tokens)
        text = " ".join(words)
        self.state.served += 1
        return _json(
            {
                "id": "resp_" + os.urandom(8).hex(),
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": body["model"],
                "output": [
                    {
                        "type": "message",
                        "id": "msg_" + os.urandom(6).hex(),
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }
                ],
                "usage": {
                    "input_tokens": token_count(prompt),
                    "output_tokens": len(words),
                    "total_tokens": token_count(prompt) + len(words),
                },
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return _json(
            {
                "object": "list",
                "data": [
                    {
                        "id": m,
                        "object": "model",
                        "created": 0,
                        "owned_by": "vllm",
                        "max_model_len": self.state.config.max_model_len,
                    }
                    for m in self.state.models
                ],
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        return _json({"version": "0.11.0+simulated"})

    async def metrics(self, request: web.Request) -> web.Response:
        cfg, lines = self.state.config, []
        for metric, kind, value in (
            ("vllm:num_requests_running", "gauge", self.state.running),
            ("vllm:num_requests_waiting", "gauge", cfg.waiting),
            ("vllm:kv_cache_usage_perc", "gauge", cfg.kv_cache_usage),
        ):
            # one engine, as a vLLM server has per data-parallel rank; its figures are the
            # server's, whatever model a request named
            model = sorted(self.state.models)[0] if self.state.models else ""
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f'{metric}{{engine="0",model_name="{model}"}} {float(value)}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def get_config(self, request: web.Request) -> web.Response:
        cfg = self.state.config
        return _json(
            {
                **cfg.__dict__,
                "served": self.state.served,
                "received": self.state.received,
                "running": self.state.running,
                "hits": dict(self.state.hits),
                "requests": list(self.state.requests),
            }
        )

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            self.state.update(await request.json())
        except (KeyError, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return await self.get_config(request)


def _faults(state: SimState) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/_sim/"):
            state.hits[request.path] = state.hits.get(request.path, 0) + 1
            if state.config.close_connections and request.transport is not None:
                request.transport.abort()
                raise web.HTTPBadRequest  # never sent: the connection is gone
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


def create_sim_app(state: SimState) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_faults(state)])
    app[STATE] = state
    h = _Handlers(state)
    app.router.add_post("/v1/chat/completions", h.chat)
    app.router.add_post("/v1/completions", h.completions)
    app.router.add_post("/v1/embeddings", h.embeddings)
    app.router.add_post("/v1/responses", h.responses)
    app.router.add_get("/v1/models", h.models)
    app.router.add_get("/health", h.health)
    app.router.add_get("/version", h.version)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_get("/_sim/config", h.get_config)
    app.router.add_post("/_sim/config", h.set_config)
    return app


async def run_backends(
    specs: list[tuple[str, int, list[str]]],
    host: str = "127.0.0.1",
    on_ready: Callable[[], None] = lambda: None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run simulated backends, one per (name, port, models), until cancelled.

    A backend that cannot listen raises `SimulatorBindError` naming it; `on_ready` is called once
    every backend listens."""
    runners: list[web.AppRunner] = []
    try:
        for name, port, models in specs:
            runner = web.AppRunner(create_sim_app(SimState(name, models)), access_log=None)
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
            except OSError as exc:
                raise SimulatorBindError(f"{name} cannot listen on {host}:{port}: {exc}") from exc
        on_ready()
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()
