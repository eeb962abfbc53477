"""The relay of a streamed answer: `StreamRelay`, the request path's `AnswerStream`.

It passes the upstream's server-sent events through, strips the usage chunk the gateway asked
for on the client's behalf, keeps the content when the tenant's audit mode wants it, and holds
back the final `data: [DONE]` until the request's record is committed (`end`). Whatever way the
stream ends, it gives back the deployment's outstanding count and the request's limits, and it
tells the deployment's health: a clean end is a success, a break after the first byte a failure.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from gateway.errors import ClientClosed, GatewayError, UpstreamTimeout
from gateway.exchange import Exchange
from gateway.policy.schema import Deployment
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker
from gateway.upstream.base import UpstreamStream
from gateway.upstream.sse import SSEUsageFilter, error_event


class StreamRelay:
    def __init__(
        self,
        *,
        exchange: Exchange,
        deployment: Deployment,
        upstream: UpstreamStream,
        chunks: AsyncIterator[bytes],
        first: bytes,
        strip_usage: bool,
        keep_content: bool,
        health: HealthTracker,
        load: LoadTracker,
        finish: Callable[[Exchange], Awaitable[None]],
        abandon: Callable[[Exchange], None],
    ) -> None:
        self._exchange = exchange
        self._dep = deployment
        self._upstream = upstream
        self._chunks = chunks
        self._first = first
        self._sse = SSEUsageFilter(strip_usage)
        self._keep = keep_content
        self._content = bytearray()
        self._health = health
        self._load = load
        self._finish = finish  # commit the record (raises when it cannot), count and log
        self._abandon = abandon  # count, log and record without anyone waiting
        self._tail = b""  # the final `data: [DONE]`, held back
        self._broken = False
        self._recorded = False
        self._closed = False
        self._events: AsyncGenerator[bytes, None] | None = None
        exchange.response_body = self._content

    def events(self) -> AsyncIterator[bytes]:
        if self._events is None:
            self._events = self._relay()
        return self._events

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        exchange = self._exchange
        opened = self._health.now()
        try:
            out = self._take(self._sse.feed(self._first))
            if out:
                yield out
            async for chunk in self._chunks:
                out = self._take(self._sse.feed(chunk))
                if out:
                    yield out
        except GatewayError as exc:
            # the upstream broke the stream or went idle after its first byte: that counts
            outcome = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "stream_broken"
            self._health.failure(self._dep, outcome, exchange.principal.tenant, opened)
            self._load.record_outcome(self._dep.id, failed=True)
            exchange.fail(exc)
            self._broken = True
            yield error_event(exc.envelope())
            return
        self._health.success(self._dep, exchange.principal.tenant)  # it ended cleanly
        self._load.record_outcome(self._dep.id, failed=False)

    async def end(self) -> bytes:
        if self._broken:
            return b""
        exchange = self._exchange
        ended = self._take(self._sse.flush())
        exchange.usage = self._sse.usage
        try:
            await self._finish(exchange)
        except GatewayError as exc:  # the record could not be committed: the client is told
            self._recorded = True
            return ended + error_event(exc.envelope())
        self._recorded = True
        return ended + self._tail

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        exchange = self._exchange
        try:
            if self._events is not None:
                await self._events.aclose()
        finally:
            if not self._recorded and exchange.error is None:
                exchange.status = ClientClosed.status
            exchange.usage = self._sse.usage
            self._load.finish(self._dep.id)
            try:
                await self._upstream.aclose()
            finally:  # given back and recorded even if closing the upstream fails
                if not self._recorded:
                    self._abandon(exchange)

    def _take(self, events: bytes) -> bytes:
        """Keep the content if wanted, and hold back a final `data: [DONE]`."""
        for done in (b"data: [DONE]\n\n", b"data: [DONE]\r\n\r\n"):
            if events.endswith(done):
                events = events[: -len(done)]
                self._tail += done
                break
        if self._keep:
            self._content.extend(events)
        return events
