"""The upstream client's pool: slots come back whatever happened to a connect, and idle
connections do not pile up (they are closed after `keepalive_s`, and at most `max_idle` wait)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.upstream.scripted import client, json_reply, read_request, server

pytestmark = pytest.mark.anyio


async def test_a_cancelled_connect_gives_its_slot_back() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(json_reply(b"{}"))
            await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the connection that only filled the queue
        finally:
            writer.close()

    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # one connection fills the queue: the next connect hangs unanswered
        filler.connect(listener.getsockname())
        port = listener.getsockname()[1]
        http = client(f"http://127.0.0.1:{port}", pool_size=1, connect_s=30.0)
        hanging = asyncio.create_task(http.request("POST", "/x", b"{}", whole=True))
        await asyncio.sleep(0.2)
        assert not hanging.done()
        hanging.cancel()  # a caller that gave up (its client left, or its deadline passed)
        with pytest.raises(asyncio.CancelledError):
            await hanging
        listener.setblocking(False)
        srv = await asyncio.start_server(answer, sock=listener)
        try:
            response = await asyncio.wait_for(http.request("POST", "/x", b"{}", whole=True), 2.0)
            assert await response.read() == b"{}"
            await http.aclose()
            filler.close()
            await asyncio.sleep(0.05)
        finally:
            srv.close()
            await srv.wait_closed()


async def test_idle_connections_are_closed_after_keepalive_and_capped_in_number() -> None:
    gate = asyncio.Event()
    closed_by_client = 0

    async def keeps_them_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal closed_by_client
        try:
            while True:
                await read_request(reader)
                await gate.wait()
                writer.write(json_reply(b"{}"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            closed_by_client += 1

    async with server(keeps_them_open) as (url, peers):
        http = client(url, pool_size=8, keepalive_s=0.3, max_idle=2)
        calls = [
            asyncio.create_task(http.request("POST", "/x", b"{}", whole=True)) for _ in range(6)
        ]
        await asyncio.sleep(0.1)
        gate.set()
        for response in await asyncio.gather(*calls):
            assert await response.read() == b"{}"
        await asyncio.sleep(0.1)
        assert len(peers) == 6
        assert http.pool.idle_connections == 2 and closed_by_client == 4  # the cap
        await asyncio.sleep(0.5)
        assert http.pool.idle_connections == 0 and http.pool.open_connections == 0
        assert closed_by_client == 6  # nobody asked for them: closed, not left to the server
        await http.aclose()
