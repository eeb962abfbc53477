"""Give every request an id, echo it in `x-request-id`, and hand it to the handlers."""

from __future__ import annotations

import itertools
import os
import re

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send

_ACCEPTABLE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
HEADER = b"x-request-id"


class RequestIds:
    """The client's `x-request-id` when it is acceptable, else a new one; and a decision id for
    each request, always the gateway's own. Both are a random prefix drawn once per process and a
    counter: unique across replicas and restarts without a system call per request."""

    def __init__(self) -> None:
        self._prefix = "req_" + os.urandom(6).hex()
        self._counter = itertools.count(1)
        self._decision_prefix = "dec_" + os.urandom(6).hex()
        self._decisions = itertools.count(1)

    def decision(self) -> str:
        return f"{self._decision_prefix}{next(self._decisions):012x}"

    def of(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == HEADER:
                if _ACCEPTABLE.match(value):
                    return str(value.decode())
                break
        return f"{self._prefix}{next(self._counter):012x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, ids: RequestIds) -> None:
        self.app = app
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.ids.of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        raw = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)
