"""A fault-injecting TCP proxy for tests: it sits between the gateway and a backend and can delay,
blackhole (accept and never answer), refuse, or reset a connection after some bytes of the answer,
or stall: hold every byte, on connections old and new, until the mode changes, then deliver it (a
server or network that stops answering and comes back). Refusing also cuts open connections at
their next byte.

Run it inside a test with `FaultProxy(target_port).running()`; change `mode` at any time; read
`open_connections` to check that nothing is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass


@dataclass
class Mode:
    kind: str = "pass"  # pass | delay | latency | blackhole | refuse | reset | stall
    delay_s: float = 0.0  # delay: before connecting; latency: before each chunk, both ways
    reset_after_bytes: int = 0


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # the port it listens on, chosen by the system when it starts
        self.mode = Mode()
        self.open_connections = 0
        self.accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultProxy]:
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        thread.start()
        ready.wait(10)
        if not self.port:
            thread.join(10)
            raise RuntimeError("the fault proxy could not start")
        try:
            yield self
        finally:
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop, ready))
        finally:
            ready.set()
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        """Serve until told to stop, then close the listener and every connection still open,
        so that nothing is left pending when the loop closes."""
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            this = asyncio.current_task()
            handlers = [task for task in asyncio.all_tasks() if task is not this]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    async def _while_stalled(self) -> bool:
        """Hold the bytes while stalled; False once refusing (open connections are cut too)."""
        while self.mode.kind == "stall":
            await asyncio.sleep(0.01)
        return self.mode.kind != "refuse"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_connections += 1
        mode = self.mode
        try:
            if mode.kind == "refuse":
                _reset(writer)
                return
            if mode.kind == "blackhole":
                await reader.read()  # until the client gives up and closes
                return
            if mode.kind == "delay":
                await asyncio.sleep(mode.delay_s)
            await self._while_stalled()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            latency = mode.delay_s if mode.kind == "latency" else 0.0
            try:
                await asyncio.gather(
                    _pipe(reader, up_writer, None, latency, self._while_stalled),
                    _pipe(
                        up_reader,
                        writer,
                        mode.reset_after_bytes if mode.kind == "reset" else None,
                        latency,
                        self._while_stalled,
                    ),
                )
            finally:
                up_writer.close()
                with contextlib.suppress(Exception):
                    await up_writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    reset_after: int | None,
    latency_s: float = 0.0,
    hold: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    sent = 0
    try:
        while data := await reader.read(65536):
            if hold is not None and not await hold():
                _reset(writer)
                return
            if latency_s:
                await asyncio.sleep(latency_s)
            if reset_after is not None and sent + len(data) >= reset_after:
                writer.write(data[: max(0, reset_after - sent)])
                await writer.drain()
                _reset(writer)
                return
            writer.write(data)
            await writer.drain()
            sent += len(data)
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN, as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
