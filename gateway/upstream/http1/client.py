"""The client of one configured origin: builds the request head once, sends on the pool."""

from __future__ import annotations

import asyncio
import ssl

from gateway.upstream.http1.errors import ConnectionBroken
from gateway.upstream.http1.pool import MAX_IDLE, Origin, Pool
from gateway.upstream.http1.response import Response


class HTTPClient:
    """Requests to one configured origin; `request` returns once the head is in (or the body)."""

    def __init__(
        self,
        base_url: str,
        *,
        pool_size: int,
        connect_s: float,
        first_byte_s: float,
        idle_s: float,
        headers: dict[str, str] | None = None,
        keepalive_s: float = 4.0,
        max_idle: int = MAX_IDLE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = Origin.parse(base_url)
        context = None
        if self.origin.scheme == "https":  # a backend's own CA or client certificate, if given
            context = ssl_context or ssl.create_default_context()
        self._pool = Pool(self.origin, pool_size, connect_s, keepalive_s, context, max_idle)
        self._first_byte_s = first_byte_s
        self._idle_s = idle_s
        fixed = {"host": self.origin.host_header, **(headers or {})}
        for name, value in fixed.items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} holds a line break")
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())

    @property
    def pool(self) -> Pool:
        return self._pool

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, whole: bool = False
    ) -> Response:
        """Send `method path` (under the base URL's path) and return the response.

        `whole=True` returns once the body is complete too, which costs one wake-up less."""
        target = self.origin.base_path + path
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        if body is not None:
            head += f"content-length: {len(body)}\r\n"
        raw = (head + "\r\n").encode("latin-1")
        for attempt in (1, 2):
            connection = await self._pool.acquire()
            reused = connection.reused
            response, pending = connection.send(raw, body, whole, self._first_byte_s, self._idle_s)
            try:
                return await pending
            except ConnectionBroken:
                if attempt == 1 and reused and not response.received:
                    continue  # the server closed an idle connection as we sent: once more
                raise
            except asyncio.CancelledError:
                connection.abort(ConnectionBroken("request cancelled"))
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._pool.aclose()
