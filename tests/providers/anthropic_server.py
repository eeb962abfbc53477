"""A small server speaking Anthropic's Messages API wire format (JSON and SSE), for litellm tests.

POST /v1/messages answers like the real API: `message` objects with content blocks and usage,
or an SSE stream of message_start, content_block_start, content_block_delta (text_delta),
content_block_stop, message_delta (stop_reason, output usage) and message_stop, with `ping`
events between. Errors use Anthropic's envelope (`{"type": "error", "error": {...}}`) and a 429
carries `retry-after`. `POST /_control` sets failures; `GET /_control` returns received requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web

from tests.providers.control import Recorder

WORDS = ["Bonjour", "from", "a", "simulated", "Claude", "that", "answers", "in", "small", "pieces"]


class Anthropic(Recorder):
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        failure = self.next_failure()
        if failure is not None:
            status, message = failure
            kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}
            headers = {"retry-after": "7"} if status == 429 else {}
            return web.json_response(
                {
                    "type": "error",
                    "error": {
                        "type": kind.get(status, "api_error"),
                        "message": message,
                    },
                },
                status=status,
                headers=headers,
            )
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        words = WORDS[: min(len(WORDS), int(body.get("max_tokens", 1024)))]
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_sim01",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": " ".join(words)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": len(words)},
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_sim02",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
                },
            },
        )
        await event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        await event("ping", {"type": "ping"})
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            await event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
            await asyncio.sleep(0)
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response


def make_app() -> web.Application:
    sim = Anthropic()
    app = web.Application()
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_route("*", "/_control", sim.control)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
