"""A small server speaking AWS Bedrock's Converse API wire format, for litellm tests.

`POST /model/{modelId}/converse` answers a Converse response (output message with content
blocks, stopReason, usage, metrics). `POST /model/{modelId}/converse-stream` answers in AWS's
binary event-stream framing (`application/vnd.amazon.eventstream`: prelude with lengths and CRC32,
typed headers, JSON payload, message CRC32) with the events messageStart, contentBlockDelta,
contentBlockStop, messageStop and metadata. Requests must be signed with SigV4: the credential
scope (access key id, date, region, `bedrock`) is parsed from the Authorization header and kept.
Errors carry `x-amzn-ErrorType` and a `{"message": ...}` body, as Bedrock's do.
`POST /_control` sets failures; `GET /_control` returns received requests.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import sys
import zlib
from typing import Any

from aiohttp import web

from tests.providers.control import Recorder

WORDS = ["Guten", "Tag", "from", "a", "simulated", "Bedrock", "model", "in", "Frankfurt", "today"]
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z-]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=[0-9a-f]{64}$"
)
ERROR_TYPES = {
    400: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
}


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # name length, name, type 7 (string), value length, value
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + struct.pack("!BH", 7, len(raw_value))
        + raw_value
    )


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One event-stream message, framed as AWS frames it."""
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    total = 4 + 4 + 4 + len(headers) + len(body) + 4
    prelude = struct.pack("!II", total, len(headers))
    head = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + body
    return head + struct.pack("!I", zlib.crc32(head))


class Bedrock(Recorder):
    def _error(self, status: int, message: str) -> web.Response:
        kind = ERROR_TYPES.get(status, "InternalServerException")
        return web.json_response(
            {"message": message},
            status=status,
            headers={
                "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            },
        )

    async def converse(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        signed = SIGV4.match(request.headers.get("authorization", ""))
        self.received.append(
            {
                "path": request.path,
                "body": body,
                "signature": signed.groupdict() if signed else None,
                "raw_headers": dict(request.headers),
            }
        )
        if signed is None or signed["service"] != "bedrock":
            return web.json_response(
                {"message": "Missing Authentication Token"},
                status=403,
                headers={"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
            )
        failure = self.next_failure()
        if failure is not None:
            return self._error(*failure)
        prompt_tokens = sum(
            len(block.get("text", "").split())
            for message in body.get("messages", [])
            for block in message.get("content", [])
        )
        limit = int(body.get("inferenceConfig", {}).get("maxTokens", 4096))
        words = WORDS[: min(len(WORDS), limit)]
        usage = {
            "inputTokens": prompt_tokens,
            "outputTokens": len(words),
            "totalTokens": prompt_tokens + len(words),
        }
        if not request.path.endswith("/converse-stream"):
            return web.json_response(
                {
                    "output": {
                        "message": {"role": "assistant", "content": [{"text": " ".join(words)}]}
                    },
                    "stopReason": "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 42},
                }
            )
        response = web.StreamResponse(
            headers={"content-type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        await response.write(event_message("messageStart", {"role": "assistant"}))
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            await response.write(
                event_message(
                    "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}
                )
            )
            await asyncio.sleep(0)
        await response.write(event_message("contentBlockStop", {"contentBlockIndex": 0}))
        await response.write(event_message("messageStop", {"stopReason": "end_turn"}))
        await response.write(
            event_message("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})
        )
        await response.write_eof()
        return response


def make_app() -> web.Application:
    sim = Bedrock()
    app = web.Application()
    app.router.add_post("/model/{model_id}/converse", sim.converse)
    app.router.add_post("/model/{model_id}/converse-stream", sim.converse)
    app.router.add_route("*", "/_control", sim.control)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
