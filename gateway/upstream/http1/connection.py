"""One TCP (or TLS) connection: writes a request, feeds llhttp, settles the response."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from gateway.upstream.http1.errors import ConnectionBroken, ReadTimeout
from gateway.upstream.http1.response import Response

if TYPE_CHECKING:
    from gateway.upstream.http1.pool import Pool


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        # one parser for the connection's life: llhttp starts over after each complete message,
        # and a parse error takes the connection down
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._head: asyncio.Future[Response] | None = None
        self._whole = False  # the head future waits for the whole body
        self._length_known = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._idle_s = 0.0
        self._paused = False
        self.closed = False
        self.counted_out = False  # the pool no longer counts this connection as open
        self.reused = False
        self.idle_since = 0.0

    # lifecycle
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        response = self._response
        if response is not None and response.status and not self._length_known:
            self._complete()  # a body delimited by the end of the connection
        else:
            self._fail(ConnectionBroken("the upstream closed the connection"))
        self._pool.forget(self)

    def abort(self, error: BaseException) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        self._pool.forget(self)

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def send(
        self, head: bytes, body: bytes | None, whole: bool, first_byte_s: float, idle_s: float
    ) -> tuple[Response, asyncio.Future[Response]]:
        """Write the request; the future gives the response at its head (or, `whole`, its end)."""
        assert self.transport is not None
        response = self._response = Response(self, bounded=not whole)
        self._length_known = False
        self._whole = whole
        self._head = head_future = self._loop.create_future()
        self._idle_s = idle_s
        self._deadline = self._loop.time() + first_byte_s
        self._timer = self._loop.call_at(self._deadline, self._on_timer)
        if body is None:
            self.transport.write(head)
        elif len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        return response, head_future

    # bytes in
    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:  # nothing asked: the upstream is out of step, drop the connection
            self.abort(ConnectionBroken("unsolicited bytes from the upstream"))
            return
        response.received = True
        if response.status:
            self._deadline = self._loop.time() + self._idle_s
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort(ConnectionBroken(f"the upstream's answer is not valid HTTP/1.1: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the response

    # llhttp's callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._length_known = True
        text = value.decode("latin-1")
        previous = response.headers.get(key)
        response.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        response.status = self._parser.get_status_code()
        if response.status in (204, 304):
            self._length_known = True
        self._deadline = self._loop.time() + self._idle_s
        if not self._whole:
            self._resolve()

    def on_body(self, body: bytes) -> None:
        response = self._response
        assert response is not None
        response._feed(body)

    def on_message_complete(self) -> None:
        self._complete()

    # settling
    def _complete(self) -> None:
        response = self._response
        if response is None:
            return
        self._response = None
        self._cancel_timer()
        response._finish()
        self._resolve(response)
        if self.closed or not self._parser.should_keep_alive():
            if not self.closed and self.transport is not None:
                self.transport.close()
                self.closed = True
            self._pool.forget(self)
        else:
            # a stream paused on the read that completed it: the next request needs the socket
            self.resume()
            self._pool.release(self)

    def _resolve(self, response: Response | None = None) -> None:
        head = self._head
        if head is not None and not head.done():
            self._head = None
            head.set_result(response or self._response)  # type: ignore[arg-type]

    def _fail(self, error: BaseException) -> None:
        response, self._response = self._response, None
        self._cancel_timer()
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        if response is not None:
            response._fail(error)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        response = self._response
        if response is None:
            return
        if self._paused:  # the reader is behind, not the upstream
            self._deadline = now + self._idle_s
        if now < self._deadline:  # bytes came since: re-arm for the new deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        what = "sending (idle timeout)" if response.status else "answering (first-byte timeout)"
        self.abort(ReadTimeout(f"the upstream stopped {what}"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
