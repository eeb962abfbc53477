"""Give every request an id, echo it in `x-request-id`, and hand it to the handlers."""

from __future__ import annotations

import os
import re

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send

_ACCEPTABLE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == HEADER), None)
        if incoming is not None and _ACCEPTABLE.match(incoming):
            request_id = incoming.decode()
        else:
            request_id = "req_" + os.urandom(12).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        raw = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)
