"""A lean HTTP/1.1 client for the upstream leg: one keep-alive pool per backend, llhttp's parser.

The gateway sends one kind of request (a POST of a JSON body to a fixed path of a configured
backend) and relays what comes back, so a general client's features (cookies, redirects, proxies
from the environment, per-request header merging, payload registries) are cost without use.
Measured on the same load (`bench/clients.py`, figures in bench/README.md), aiohttp's client
used 3.4-4.7 times this client's CPU per request and pyreqwest (Rust) 1.1-1.5 times.

- Each request is one `transport.write` of the head and the body; the response is parsed by
  httptools (llhttp, the parser uvicorn serves with) as bytes arrive.
- Connections are reused LIFO and closed once idle for `keepalive_s`, shorter than the usual
  server keep-alive, so the gateway rarely sends on a connection the server is closing; one timer
  per pool closes them even when no request comes, and at most `max_idle` wait (a burst's extra
  connections are closed as they come back). A request on a reused connection that breaks before
  any byte of the answer is sent once more on a new one.
- A slot of the pool is given back whatever ends a connection: a failed, timed-out or cancelled
  connect, a close by either side, an abort.
- Timeouts cost one timer per request: the first-byte deadline, then the same timer re-armed lazily
  while the body flows, so a long stream is not charged a timer per chunk.
- A stream's unread bytes are bounded: reading pauses above `HIGH_WATER` (so at most one more
  read lands) and resumes below `LOW_WATER`.
- Redirects are not followed and the environment's proxy settings are not read: traffic goes to
  the configured URL and nowhere else.
"""

from gateway.upstream.http1.client import HTTPClient
from gateway.upstream.http1.errors import (
    ConnectFailed,
    ConnectionBroken,
    HTTPClientError,
    ReadTimeout,
)
from gateway.upstream.http1.pool import MAX_IDLE, Origin, Pool
from gateway.upstream.http1.response import HIGH_WATER, LOW_WATER, Response

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "MAX_IDLE",
    "ConnectFailed",
    "ConnectionBroken",
    "HTTPClient",
    "HTTPClientError",
    "Origin",
    "Pool",
    "ReadTimeout",
    "Response",
]
