"""Small servers on loopback that answer byte for byte as a test scripts them, and a client of
the upstream HTTP/1.1 client with test-sized settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.upstream.http1 import HTTPClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def json_reply(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A server on a free loopback port; yields its URL and the peer port of each connection."""
    peers: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", peers
    finally:
        srv.close()
        await srv.wait_closed()


def client(url: str, **overrides: float) -> HTTPClient:
    settings = {
        "pool_size": 4,
        "connect_s": 1.0,
        "first_byte_s": 1.0,
        "idle_s": 1.0,
        "keepalive_s": 4.0,
        "max_idle": 64,
    }
    settings.update(overrides)
    return HTTPClient(
        url,
        pool_size=int(settings["pool_size"]),
        connect_s=settings["connect_s"],
        first_byte_s=settings["first_byte_s"],
        idle_s=settings["idle_s"],
        headers={"content-type": "application/json", "authorization": "Bearer upstream-key"},
        keepalive_s=settings["keepalive_s"],
        max_idle=int(settings["max_idle"]),
    )
