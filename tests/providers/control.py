"""What the wire-format test servers share: the requests they received, and failures that a test
sets through `POST /_control` (`{"status": 429, "count": 1, "message": "..."}`) and reads back
with `GET /_control`."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class Recorder:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail: dict[str, Any] = {}

    def next_failure(self) -> tuple[int, str] | None:
        """The status and message of the next failure a test asked for, if any is left."""
        if self.fail.get("count", 0) <= 0:
            return None
        self.fail["count"] -= 1
        return int(self.fail["status"]), str(self.fail.get("message", "simulated"))

    def state(self) -> dict[str, Any]:
        return {"received": self.received}

    async def control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            self.fail = await request.json()
            return web.json_response(self.fail)
        return web.json_response(self.state())
