"""The two stores under test, and a TCP proxy in front of Redis that can stall or refuse live
connections (the shared Redis on 127.0.0.1:6379 is never stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterator

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


def random_prefix() -> str:
    """A key prefix of its own per test: tests never see each other's counters."""
    return f"sgw-test:{os.urandom(6).hex()}:"


class RedisProxy:
    """`mode` is pass, stall (every byte held, on open connections too) or refuse (open
    connections reset, new ones refused). Back to pass, held bytes flow again."""

    def __init__(self, target_port: int = REDIS_PORT) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode = "pass"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse" and self._loop is not None:
            self._loop.call_soon_threadsafe(self._reset_all)

    @contextlib.contextmanager
    def running(self) -> Iterator[RedisProxy]:
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        ready.set()
        await self._stop.wait()
        server.close()
        self._reset_all()
        await asyncio.sleep(0.05)  # the connection handlers see their sockets close
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            while self.mode == "stall":
                await asyncio.sleep(0.01)
            if self.mode == "refuse":
                return
            writer.write(data)
            await writer.drain()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
