"""Connection guard for the HTTP server: a deadline for request headers and a cap on connections.

uvicorn closes idle keep-alive connections, but a connection that sends half a request line and
then nothing is kept for as long as the client likes. Twenty thousand of them exhaust the process's
file descriptors, and then `/health`, the policy watcher and the audit store fail with them. So:

- a connection must complete its request headers within `header_timeout_s` of opening, or of
  starting its next request on a kept-alive connection, or it is closed;
- beyond `max_connections` open connections, a new one is answered `503 too_many_connections`
  (in the OpenAI error shape) and closed, before the gateway reads anything from it.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("gateway.connections")
# descriptors kept free beyond the connection cap: store, policy files, upstream sockets, logs
RESERVED_DESCRIPTORS = 512


def refusal(max_connections: int) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": f"The gateway has {max_connections} connections open, its limit;"
                " retry shortly",
                "type": "service_unavailable",
                "param": None,
                "code": "too_many_connections",
            }
        }
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two guards above, configured."""
    refused = refusal(max_connections)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _refused = False
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                self._refused = True
                self.transport = transport
                transport.write(refused)
                # half-close and read what the client still sends, so that closing does not
                # reset the connection before the client has read the answer
                transport.write_eof()
                self._header_deadline = self.loop.call_later(1.0, transport.close)
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def eof_received(self) -> None:
            if self._refused:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if not self._refused:
                super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _too_slow(self) -> None:
            self._header_deadline = None
            self.transport.close()

    return GuardedHttpToolsProtocol


def reserve_descriptors(max_connections: int) -> int:
    """Raise this process's open-file limit as far as allowed, and return the connection cap
    that leaves `RESERVED_DESCRIPTORS` free (lowered, with a warning, if the limit is too low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        lowered = max(1, soft - RESERVED_DESCRIPTORS)
        log.warning(
            "the open-file limit (%d) leaves room for %d connections, not max_connections=%d",
            soft,
            lowered,
            max_connections,
        )
        return lowered
    return max_connections
