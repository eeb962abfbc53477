"""A small server speaking Azure OpenAI's wire format: deployment URLs, `api-version`, `api-key`.

POST /openai/deployments/{deployment}/chat/completions?api-version=... answers in OpenAI's JSON
or SSE (with the usage chunk when asked); .../embeddings answers vectors, as floats or base64;
it refuses a missing api-version or api-key the way
Azure does. GET /_control returns what was received.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import time
from typing import Any

from aiohttp import web

from tests.providers.control import Recorder

WORDS = ["Hej", "from", "a", "simulated", "Azure", "deployment", "in", "Sweden"]


class Azure(Recorder):
    async def _receive(self, request: web.Request) -> Any:
        body = await request.json()
        self.received.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "api_key": request.headers.get("api-key"),
                "body": body,
            }
        )
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._receive(request)
        if "api-version" not in request.query:
            return web.json_response(
                {"error": {"code": "404", "message": "Resource not found"}}, status=404
            )
        if not request.headers.get("api-key"):
            return web.json_response(
                {
                    "error": {
                        "code": "401",
                        "message": "Access denied due to invalid subscription key.",
                    }
                },
                status=401,
            )
        deployment = request.match_info["deployment"]
        head = {"id": "chatcmpl-az1", "created": int(time.time()), "model": "gpt-4o-2024-08-06"}
        usage = {
            "prompt_tokens": 9,
            "completion_tokens": len(WORDS),
            "total_tokens": 9 + len(WORDS),
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(WORDS)},
                            "finish_reason": "stop",
                            "content_filter_results": {"hate": {"filtered": False}},
                        }
                    ],
                    "usage": usage,
                    "prompt_filter_results": [{"prompt_index": 0}],
                    "deployment": deployment,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**head, "object": "chat.completion.chunk"}
        for i, word in enumerate(WORDS):
            delta = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await response.write(f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode())
        done = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(f"data: {json.dumps({**chunk, 'choices': [done]})}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(
                f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
            )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._receive(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vector = [round(0.125 * (len(str(text)) + k), 3) for k in range(8)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def make_app() -> web.Application:
    sim = Azure()
    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", sim.chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", sim.embeddings)
    app.router.add_route("*", "/_control", sim.control)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
