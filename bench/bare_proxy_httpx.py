"""The same bare proxy as `bare_proxy.py`, on httpx's client instead of aiohttp's: kept to measure
the client library the gateway's upstream adapter is built on."""

from __future__ import annotations

import os
from typing import Any

import httpx

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9001")


class BareHttpxProxy:
    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self.client is None:
            self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256))
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = self.client.build_request(
            "POST",
            UPSTREAM + scope["path"],
            content=body,
            headers={"content-type": "application/json"},
        )
        response = await self.client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(b"content-type", response.headers["content-type"].encode())],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


app = BareHttpxProxy()
