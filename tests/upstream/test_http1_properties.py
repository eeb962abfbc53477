"""Properties of the upstream HTTP/1.1 client, against a scripted server on loopback that sends
each answer in pieces (one read each): an answer is parsed the same however its bytes are split,
a stream paused by the high-water mark on its last read leaves its connection fit for reuse, and
whatever is cancelled and wherever, the pool's count of open connections matches the sockets the
server still holds, and the next request is answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.http1 import HTTPClient
from gateway.upstream.http1 import response as http1_response
from tests.upstream.scripted import client, json_reply, read_request

PIECE_GAP_S = 0.001  # long enough for the client's read to come before the next write


@dataclass(frozen=True)
class Answer:
    """A response on the wire and what the client must make of it."""

    wire: bytes
    status: int
    headers: dict[str, str]
    body: bytes
    keeps_alive: bool


HEADER_NAMES = st.sampled_from(["x-a", "X-B", "retry-after", "content-type"])
HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(st.sampled_from([200, 201, 204, 400, 404, 429, 500, 503]))
    body = b"" if status == 204 else draw(st.binary(max_size=200))
    framing = "none" if status == 204 else draw(st.sampled_from(["length", "chunked", "close"]))
    extra = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=3))
    headers: dict[str, str] = {}
    head = b"HTTP/1.1 %d Whatever\r\n" % status
    for name, value in extra:
        head += f"{name}: {value}\r\n".encode()
        key = name.lower()
        headers[key] = value if key not in headers else f"{headers[key]}, {value}"
    if framing == "length":
        head += b"content-length: %d\r\n" % len(body)
        headers["content-length"] = str(len(body))
        payload = body
    elif framing == "chunked":
        head += b"transfer-encoding: chunked\r\n"
        headers["transfer-encoding"] = "chunked"
        sizes = draw(st.lists(st.integers(1, 64), max_size=8))
        payload, rest = b"", body
        for size in sizes:
            piece, rest = rest[:size], rest[size:]
            if piece:
                payload += b"%x\r\n%s\r\n" % (len(piece), piece)
        if rest:
            payload += b"%X;ext=1\r\n%s\r\n" % (len(rest), rest)
        payload += b"0\r\n\r\n"
    else:
        payload = body  # close-delimited, or no body at all (204)
    return Answer(head + b"\r\n" + payload, status, headers, body, framing != "close")


@contextlib.asynccontextmanager
async def scripted_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A server whose connections all end before it is gone (the client has hung up by then)."""
    handlers: set[asyncio.Task[object]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1"
    finally:
        srv.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)
        await srv.wait_closed()


async def send_in_pieces(writer: asyncio.StreamWriter, wire: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        if start < cut < len(wire):
            writer.write(wire[start:cut])
            await writer.drain()
            await asyncio.sleep(PIECE_GAP_S)
            start = cut
    writer.write(wire[start:])
    await writer.drain()


async def exchange(script: list[tuple[Answer, list[int], bool]]) -> None:
    """Each answer sent in its pieces in turn, on as few connections as the answers allow; the
    client reads each whole or as a stream, and must make the same of it."""
    turns = iter(script)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer, cuts, _ in turns:
            await read_request(reader)
            await send_in_pieces(writer, answer.wire, cuts)
            if not answer.keeps_alive:
                return
        await reader.read()  # until the client hangs up

    async with scripted_server(handler) as url:
        http = client(url, pool_size=1)
        for answer, _, whole in script:
            response = await asyncio.wait_for(http.request("POST", "/x", b"{}", whole=whole), 5)
            assert response.status == answer.status
            assert response.headers == answer.headers
            if whole:
                assert await response.read() == answer.body
            else:
                assert b"".join([c async for c in response.chunks()]) == answer.body
            assert response.complete
        await http.aclose()


@st.composite
def split_answers(draw: st.DrawFn) -> list[tuple[Answer, list[int], bool]]:
    found = []
    for _ in range(draw(st.integers(1, 3))):
        answer = draw(answers())
        cuts = draw(st.lists(st.integers(1, max(1, len(answer.wire) - 1)), max_size=12))
        found.append((answer, cuts, draw(st.booleans())))
    return found


@settings(max_examples=60, deadline=None)
@given(split_answers())
def test_an_answer_is_parsed_the_same_however_its_bytes_are_split(
    script: list[tuple[Answer, list[int], bool]],
) -> None:
    asyncio.run(exchange(script))


def test_a_chunked_answer_split_at_every_byte_is_parsed_the_same() -> None:
    body = b'data: {"a":1}\n\n'
    wire = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        b"\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    answer = Answer(
        wire,
        200,
        {"content-type": "text/event-stream", "transfer-encoding": "chunked"},
        body,
        True,
    )
    # one keep-alive connection carries every split: each answer in two pieces, cut at byte i
    asyncio.run(exchange([(answer, [i], i % 2 == 0) for i in range(1, len(wire))]))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.lists(st.integers(1, size + 40), max_size=6),
            st.integers(0, 3),
        )
    )
)
def test_a_stream_paused_at_any_point_hands_its_connection_on_in_working_order(
    case: tuple[int, list[int], int],
) -> None:
    size, cuts, read_first = case
    with (
        mock.patch.object(http1_response, "HIGH_WATER", 64),
        mock.patch.object(http1_response, "LOW_WATER", 16),
    ):
        asyncio.run(_paused_stream(size, cuts, read_first))


async def _paused_stream(size: int, cuts: list[int], read_first: int) -> None:
    """A stream of `size` bytes in pieces, of which the reader takes `read_first` chunks and
    then nothing for a while (the connection pauses above the mark), then the rest; the next
    request goes out on the same connection and is answered."""
    body = bytes(range(256)) * 2
    body = body[:size]
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (size, body)
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        await send_in_pieces(writer, wire, cuts)
        await read_request(reader)
        writer.write(json_reply(b"{}"))
        await writer.drain()
        await reader.read()

    async with scripted_server(handler) as url:
        http = client(url, pool_size=1)
        response = await http.request("POST", "/x", b"{}")
        chunks = response.chunks()
        received = []
        async for chunk in chunks:
            received.append(chunk)
            if len(received) >= read_first:
                break
        await asyncio.sleep(0.02)  # the rest arrives (or waits, paused) while nobody reads
        received += [chunk async for chunk in chunks]
        assert b"".join(received) == body
        second = await asyncio.wait_for(http.request("POST", "/x", b"{}", whole=True), 2)
        assert await second.read() == b"{}"
        await http.aclose()
    assert connections == 1


STAGES = ("ok", "silent", "head", "body", "stream")


@dataclass
class Upstream:
    """A server whose answer each request names (`/s/<stage>`): `ok` answers and keeps the
    connection; the others stop at a stage of the answer (`silent` before any byte, `head`
    inside the head, `body` inside a sized body, `stream` chunks that never end) and hold the
    connection until the client hangs up. It keeps count of the connections it still holds."""

    live: set[asyncio.StreamWriter] = field(default_factory=set)
    waiting: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.live.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self.live.discard(writer)
            self.waiting.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            self.waiting.add(writer)
            head, _ = await read_request(reader)
            self.waiting.discard(writer)
            stage = head.split(b" ", 2)[1].rsplit(b"/", 1)[1]
            if stage == b"ok":
                writer.write(json_reply(b"{}"))
                continue
            if stage == b"head":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-")
            elif stage == b"body":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
            elif stage == b"stream":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                while not reader.at_eof() and not writer.is_closing():
                    writer.write(b"5\r\ndata:\r\n")
                    await asyncio.sleep(0.002)
            await reader.read()  # until the client hangs up
            return

    def drop_idle(self) -> None:
        """Close every connection waiting for a request, as a server's keep-alive timeout does."""
        for writer in list(self.waiting):
            writer.close()


@dataclass(frozen=True)
class Call:
    stage: str
    whole: bool
    cancel_steps: int | None  # loop turns before the caller gives up; None: it waits
    cancel_ms: int


CALLS = st.builds(
    Call,
    st.sampled_from(STAGES),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 8)),
    st.integers(0, 12),
)
# an operation is a group of calls made at once, the server dropping its idle connections,
# or a pause long enough for short keep-alive to expire
OPERATIONS = st.one_of(st.lists(CALLS, min_size=1, max_size=4), st.just("drop"), st.just("pause"))


async def call(http: HTTPClient, how: Call) -> None:
    async def use() -> None:
        response = await http.request("POST", f"/s/{how.stage}", b"{}", whole=how.whole)
        try:
            async for _ in response.chunks():
                pass
        finally:
            response.close()

    task = asyncio.create_task(use())
    stalls = how.stage != "ok"
    if how.cancel_steps is None and not stalls:
        await task
        return
    for _ in range(how.cancel_steps or 0):
        await asyncio.sleep(0)
    await asyncio.sleep(how.cancel_ms / 1000)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def settle(http: HTTPClient, upstream: Upstream, size: int) -> None:
    """Once the closes have travelled, the pool counts exactly the sockets the server holds."""
    pool = http.pool
    for _ in range(50):
        await asyncio.sleep(0.01)
        if pool.open_connections == len(upstream.live):
            break
    assert pool.open_connections == len(upstream.live)
    assert 0 <= pool.idle_connections <= pool.open_connections <= size


@settings(max_examples=60, deadline=None)
@given(
    st.lists(OPERATIONS, min_size=1, max_size=6),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from([0.03, 10.0]),
)
def test_cancelled_calls_in_every_state_leave_the_pool_counting_right(
    operations: list[list[Call] | str], size: int, max_idle: int, keepalive_s: float
) -> None:
    asyncio.run(_accounting(operations, size, max_idle, keepalive_s))


async def _accounting(
    operations: list[list[Call] | str], size: int, max_idle: int, keepalive_s: float
) -> None:
    upstream = Upstream()
    async with scripted_server(upstream) as url:
        http = client(url, pool_size=size, max_idle=max_idle, keepalive_s=keepalive_s)
        for operation in operations:
            if operation == "drop":
                upstream.drop_idle()
            elif operation == "pause":
                await asyncio.sleep(0.05)
            else:
                assert isinstance(operation, list)
                await asyncio.wait_for(asyncio.gather(*(call(http, c) for c in operation)), 5)
            await settle(http, upstream, size)
        # every slot is free again: as many calls at once as the pool has room for are answered
        answered = [http.request("POST", "/s/ok", b"{}", whole=True) for _ in range(size)]
        for response in await asyncio.wait_for(asyncio.gather(*answered), 2):
            assert await response.read() == b"{}"
        await http.aclose()
        await settle(http, upstream, size)
        assert http.pool.open_connections == 0
