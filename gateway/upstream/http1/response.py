"""One response: its head once it is in, then its body as it arrives, with bounded buffering."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from gateway.upstream.http1.errors import ConnectionBroken, HTTPClientError

if TYPE_CHECKING:
    from gateway.upstream.http1.connection import Connection

HIGH_WATER = 256 * 1024  # a stream's unread bytes above which the socket stops being read
LOW_WATER = 64 * 1024  # and below which it is read again


class Response:
    """One response: the status and headers once they are in, then the body as it arrives."""

    __slots__ = (
        "_bounded",
        "_buffered",
        "_chunks",
        "_complete",
        "_connection",
        "_error",
        "_waiter",
        "headers",
        "received",
        "status",
    )

    def __init__(self, connection: Connection, bounded: bool) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._connection: Connection | None = connection
        self._bounded = bounded  # pause reading while too much is unread (streams)
        self.received = False  # any byte of the answer arrived

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip()

    @property
    def complete(self) -> bool:
        return self._complete

    async def read(self) -> bytes:
        """The whole body."""
        while not self._complete:
            await self._wait()
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks.popleft()
        body = b"".join(chunks)
        chunks.clear()
        return body

    async def chunks(
        self, translate: Callable[[HTTPClientError], Exception] | None = None
    ) -> AsyncIterator[bytes]:
        """The body as it arrives, bytes as they were read (not aligned to any framing).

        `translate` turns this client's errors into the caller's, saving a wrapping generator."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < LOW_WATER and self._connection is not None:
                    self._connection.resume()
                yield chunk
            elif self._error is not None:
                error = self._error
                if translate is not None and isinstance(error, HTTPClientError):
                    raise translate(error) from error
                raise error
            elif self._complete:
                return
            else:
                await self._wait()

    def close(self) -> None:
        """Done with this response: an unfinished one takes its connection down with it."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._complete:
            connection.abort(ConnectionBroken("response closed before its end"))

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # fed by the connection
    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._bounded and self._buffered > HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._connection = None
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._complete:
            return
        self._error = error
        self._complete = True
        self._connection = None
        self._wake()
