"""A fast OpenAI-compatible upstream for benchmarks: raw asyncio HTTP/1.1 with keep-alive.

POST /v1/chat/completions answers a fixed completion, or with `"stream": true` 20 SSE chunks,
a usage chunk when asked, and `[DONE]`. Fast enough that it is never what a benchmark measures.

For the scaling studies (`bench.scaling`), two fields of the request change the answer:
`"bench_reply_bytes": N` makes the completion's content N bytes long, and
`"bench_interval_ms": T` with `"stream": true` sends `max_tokens` chunks T ms apart (chunked
transfer encoding), a long stream held open.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

CHUNKS = 20


def _json_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "word " * CHUNKS},
                    "logprobs": None,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS},
        }
    )


def _sse_body(usage: bool) -> bytes:
    head = b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench",'
    parts = [
        b"data: " + head + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"logprobs":null,"finish_reason":null}]}\n\n'
    ]
    parts += [
        b"data: " + head + b'"choices":[{"index":0,"delta":{"content":"word "},'
        b'"logprobs":null,"finish_reason":null}]}\n\n'
    ] * CHUNKS
    if usage:
        parts.append(
            b"data: " + head + b'"choices":[],"usage":{"prompt_tokens":8,'
            b'"completion_tokens":20,"total_tokens":28}}\n\n'
        )
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


JSON = _json_body()
SSE = {True: _sse_body(True), False: _sse_body(False)}


def _response(body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        self._tasks: set[asyncio.Future[None]] = set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if b'"bench_' in body:
                self._scaling(orjson.loads(body))
            elif head.startswith(b"get"):
                self.transport.write(_response(b'{"status":"ok"}', b"application/json"))
            elif b'"stream":true' in body.replace(b" ", b""):
                usage = b'"include_usage":true' in body.replace(b" ", b"")
                self.transport.write(_response(SSE[usage], b"text/event-stream"))
            else:
                self.transport.write(_response(JSON, b"application/json"))

    def _scaling(self, data: dict[str, object]) -> None:
        interval = data.get("bench_interval_ms")
        if isinstance(interval, int) and data.get("stream"):
            count = data.get("max_tokens")
            task = asyncio.ensure_future(
                self._slow_stream(count if isinstance(count, int) else CHUNKS, interval)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        size = data.get("bench_reply_bytes")
        reply = orjson.loads(JSON)
        reply["choices"][0]["message"]["content"] = "x" * (size if isinstance(size, int) else 0)
        self.transport.write(_response(orjson.dumps(reply), b"application/json"))

    async def _slow_stream(self, count: int, interval_ms: int) -> None:
        write = self.transport.write
        write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        event = SSE[False].split(b"\n\n")[1] + b"\n\n"
        for _ in range(count):
            await asyncio.sleep(interval_ms / 1000)
            if self.transport.is_closing():
                return
            write(b"%x\r\n%s\r\n" % (len(event), event))
        done = b"data: [DONE]\n\n"
        write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
