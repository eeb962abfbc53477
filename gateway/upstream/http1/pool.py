"""Keep-alive connections to one origin: LIFO reuse, a bounded count, idle ones trimmed."""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.upstream.http1.connection import Connection
from gateway.upstream.http1.errors import ConnectFailed

MAX_IDLE = 64  # idle connections kept per pool; more come back only after a burst


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class Pool:
    """Keep-alive connections to one origin, at most `size` of them open at once."""

    def __init__(
        self,
        origin: Origin,
        size: int,
        connect_s: float,
        keepalive_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE,
    ) -> None:
        self.origin = origin
        self._size = size
        self._connect_s = connect_s
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._idle: list[Connection] = []  # oldest first: released in time order, reused LIFO
        self._trim_timer: asyncio.TimerHandle | None = None
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def acquire(self) -> Connection:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        idle = self._idle
        while True:
            if idle:
                now = self.loop.time()
                while idle:
                    connection = idle.pop()
                    if not connection.closed and now - connection.idle_since < self._keepalive_s:
                        connection.reused = True
                        return connection
                    self._discard(connection)
            if self._open < self._size:
                return await self._connect()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on the turn this waiter was given
                raise

    async def _connect(self) -> Connection:
        if self._closed:
            raise ConnectFailed("the client is closed")
        self._open += 1
        origin = self.origin
        made: list[Connection] = []

        def factory() -> Connection:
            made.append(Connection(self))
            return made[0]

        try:
            async with asyncio.timeout(self._connect_s):
                _, connection = await self.loop.create_connection(
                    factory,
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl is not None else None,
                )
        except BaseException as exc:  # cancelled too: the slot must come back
            self._abandon(made[0] if made else None)
            if isinstance(exc, TimeoutError):
                raise ConnectFailed(f"connecting took over {self._connect_s:g} s") from exc
            if isinstance(exc, OSError):
                raise ConnectFailed(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
            raise
        return connection

    def _abandon(self, connection: Connection | None) -> None:
        """A connect that did not complete, stopped wherever it was (before the socket, during
        the TLS handshake, or with its transport made): close what exists, free the slot once."""
        if connection is None:
            self._open -= 1
            self._wake_one()
        else:
            self._discard(connection)

    def release(self, connection: Connection) -> None:
        if self._closed or connection.closed:
            self.forget(connection)
            return
        idle = self._idle
        connection.idle_since = self.loop.time()
        idle.append(connection)
        if len(idle) > self._max_idle:
            self._discard(idle[0])  # the longest idle goes; LIFO reuse keeps the warm ones
        if self._trim_timer is None:
            self._arm_trim()
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """A connection that closed: its slot is free."""
        if connection.counted_out:
            return
        connection.counted_out = True
        if connection in self._idle:
            self._idle.remove(connection)
        self._open -= 1
        self._wake_one()

    def _discard(self, connection: Connection) -> None:
        if not connection.closed:
            connection.closed = True
            if connection.transport is not None:
                connection.transport.close()
        self.forget(connection)

    def _arm_trim(self) -> None:
        if self._idle and not self._closed:
            when = self._idle[0].idle_since + self._keepalive_s
            self._trim_timer = self.loop.call_at(when, self._trim)

    def _trim(self) -> None:
        """Close the connections idle for `keepalive_s`, whether or not a request comes."""
        self._trim_timer = None
        expired = self.loop.time() - self._keepalive_s
        idle = self._idle
        while idle and idle[0].idle_since <= expired:
            self._discard(idle[0])
        self._arm_trim()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        for connection in self._idle[:]:
            self._discard(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectFailed("the client is closed"))
        self._waiters.clear()
