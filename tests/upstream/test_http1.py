"""The upstream HTTP/1.1 client against small servers on loopback that answer byte for byte as
scripted: keep-alive reuse, chunked and close-delimited bodies, timeouts, a server closing an
idle connection, the pool's limit, and a slow reader holding a fast stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.upstream.http1 import (
    HIGH_WATER,
    ConnectFailed,
    ConnectionBroken,
    HTTPClient,
    ReadTimeout,
)
from tests.upstream.scripted import client, json_reply, read_request, server

pytestmark = pytest.mark.anyio


async def test_requests_reuse_one_connection_and_carry_the_fixed_headers() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            seen.append((head, body))
            writer.write(json_reply(b'{"echo":' + body + b"}"))

    async with server(echo) as (url, peers):
        http = client(url)
        for i in range(3):
            response = await http.request("POST", "/chat/completions", b'{"n":%d}' % i, whole=True)
            assert response.status == 200
            assert response.content_type == "application/json"
            assert await response.read() == b'{"echo":{"n":%d}}' % i
        await http.aclose()
    assert len(peers) == 1  # kept alive
    head = seen[0][0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{url.split(':')[2].split('/')[0]}\r\n" in head
    assert "authorization: Bearer upstream-key\r\n" in head
    assert "content-length: 7\r\n" in head


async def test_a_chunked_stream_arrives_piece_by_piece_before_it_ends() -> None:
    release = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        writer.write(b"7\r\ndata: 1\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with server(chunked) as (url, _):
        http = client(url)
        response = await http.request("POST", "/chat/completions", b"{}")
        assert response.status == 200 and response.content_type == "text/event-stream"
        chunks = response.chunks()
        assert await anext(chunks) == b"data: 1"  # before the server sent the rest
        release.set()
        assert [c async for c in chunks] == [b"data: 2"]
        assert response.complete
        assert http.pool.idle_connections == 1  # a finished stream gives its connection back
        await http.aclose()


async def test_a_body_delimited_by_the_connection_closing_is_read_whole() -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"1}")
        await writer.drain()

    async with server(old_style) as (url, _):
        http = client(url)
        response = await http.request("POST", "/x", b"{}", whole=True)
        assert await response.read() == b'{"a":1}'
        assert http.pool.open_connections == 0  # not reused: the server closed it
        await http.aclose()


async def test_a_server_that_closes_an_idle_connection_costs_no_failure() -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(json_reply(b"{}"))  # keep-alive announced, then closed anyway
        await writer.drain()

    async with server(one_per_connection) as (url, peers):
        http = client(url)
        for _ in range(3):
            response = await http.request("POST", "/x", b"{}", whole=True)
            assert await response.read() == b"{}"
            await asyncio.sleep(0.05)  # the close reaches the client
        await http.aclose()
    assert len(peers) == 3


async def test_a_request_on_a_connection_that_breaks_as_it_is_reused_is_sent_once_more() -> None:
    requests = 0

    async def close_after_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1
        writer.write(json_reply(b"{}"))
        await writer.drain()
        await read_request(reader)  # the second request arrives, and the server drops it unread
        writer.transport.abort()

    async with server(close_after_first) as (url, peers):
        http = client(url)
        assert await (await http.request("POST", "/x", b"{}", whole=True)).read() == b"{}"
        # the same connection is reused, broken, and the request goes out on a new one
        assert await (await http.request("POST", "/x", b"{}", whole=True)).read() == b"{}"
        await http.aclose()
    assert len(peers) == 2 and requests == 2


async def test_a_silent_upstream_hits_the_first_byte_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with server(silent) as (url, _):
        http = client(url, first_byte_s=0.2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(ReadTimeout, match="first-byte"):
            await http.request("POST", "/x", b"{}", whole=True)
        assert 0.15 < loop.time() - began < 1.0
        assert http.pool.open_connections == 0  # the timed-out connection is not reused
        await http.aclose()


async def test_a_stream_that_stalls_hits_the_idle_timeout_but_a_slow_steady_one_does_not() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, every gap shorter than the idle timeout
            writer.write(b"1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)  # then silence

    async with server(stalls) as (url, _):
        http = client(url, idle_s=0.3)
        response = await http.request("POST", "/x", b"{}")
        received = b""
        with pytest.raises(ReadTimeout, match="idle"):
            async for chunk in response.chunks():
                received += chunk
        assert received == b"a" * 6
        await http.aclose()


async def test_a_slow_reader_holds_back_a_fast_stream_without_buffering_it_all() -> None:
    total = 8 * 1024 * 1024
    piece = b"x" * 65536
    sent = 0

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        while sent < total:
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
        await reader.read()

    async with server(firehose) as (url, _):
        http = client(url, idle_s=0.5)
        response = await http.request("POST", "/x", b"{}")
        await asyncio.sleep(1.0)  # longer than the idle timeout: a paused reader is not idle
        assert sent < total  # the server is held back (the sockets' buffers took the rest)
        assert response._buffered <= HIGH_WATER + 256 * 1024  # one more read at most
        received = 0
        async for chunk in response.chunks():
            received += len(chunk)
        assert received == total
        await http.aclose()


async def test_the_pool_never_opens_more_than_its_size() -> None:
    gate = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await gate.wait()
            writer.write(json_reply(b"{}"))
            await writer.drain()

    async with server(slow) as (url, peers):
        http = client(url, pool_size=2)
        calls = [
            asyncio.create_task(http.request("POST", "/x", b"{}", whole=True)) for _ in range(6)
        ]
        await asyncio.sleep(0.2)
        assert len(peers) == 2 and http.pool.open_connections == 2
        gate.set()
        for response in await asyncio.gather(*calls):
            assert await response.read() == b"{}"
        await http.aclose()
    assert len(peers) == 2


async def test_a_refused_connection_and_a_garbled_answer_are_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        http = client(f"http://127.0.0.1:{port}")
        with pytest.raises(ConnectFailed):
            await http.request("POST", "/x", b"{}")
        await http.aclose()

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 abc\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with server(garbled) as (url, _):
        http = client(url)
        with pytest.raises(ConnectionBroken, match="not valid HTTP"):
            await http.request("POST", "/x", b"{}")
        await http.aclose()


async def test_a_stream_closed_before_its_end_takes_its_connection_down() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with server(endless) as (url, _):
        http = client(url)
        response = await http.request("POST", "/x", b"{}")
        assert await anext(response.chunks())
        response.close()
        await asyncio.sleep(0.05)
        assert http.pool.open_connections == 0 and http.pool.idle_connections == 0
        await http.aclose()


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        HTTPClient(
            "http://127.0.0.1:1",
            pool_size=1,
            connect_s=1,
            first_byte_s=1,
            idle_s=1,
            headers={"authorization": "Bearer x\r\nx-injected: 1"},
        )


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_https_upstreams_are_verified_against_the_trusted_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(json_reply(body))
        await writer.drain()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    url = f"https://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1"
    try:
        untrusted = client(url)  # the system's trust store does not know this certificate
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.request("POST", "/x", b"{}")
        await untrusted.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        trusted = client(url)
        response = await trusted.request("POST", "/x", b'{"over":"tls"}', whole=True)
        assert await response.read() == b'{"over":"tls"}'
        await trusted.aclose()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_stream_paused_on_its_last_read_leaves_its_connection_fit_for_the_next() -> None:
    body = b"x" * (HIGH_WATER + 1)  # only the read that brings the last byte crosses the mark

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await read_request(reader)
        writer.write(json_reply(b'{"second":true}'))
        await writer.drain()
        await reader.read()

    async with server(keep_alive) as (url, peers):
        http = client(url)
        response = await http.request("POST", "/x", b"{}")
        await asyncio.sleep(0.2)  # the whole body arrives while nobody reads it
        assert b"".join([c async for c in response.chunks()]) == body
        second = await asyncio.wait_for(http.request("POST", "/x", b"{}", whole=True), 2.0)
        assert await second.read() == b'{"second":true}'
        await http.aclose()
    assert len(peers) == 1  # the same connection carried both


def test_the_package_exports_the_names_the_gateway_imports() -> None:
    import gateway.upstream.http1 as package

    assert sorted(package.__all__) == sorted(
        [
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
    )
    assert all(getattr(package, name) is not None for name in package.__all__)
