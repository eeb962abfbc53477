"""The proxied OpenAI routes (`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
`/v1/responses`), served straight from ASGI.

These four routes carry nearly all traffic, and a framework's routing, request objects and
exception layers cost more per request than policy, audit and metrics together. So this layer sits
in front of the FastAPI app: it answers those routes itself and hands every other request (models,
health, admin, audit, metrics) to the app unchanged. What a client sees is the same either way:
the OpenAI error envelope, `x-request-id`, the record committed before the answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable

from gateway.asgi.request_id import HEADER as REQUEST_ID_HEADER
from gateway.asgi.request_id import RequestIds
from gateway.asgi.types import ASGIApp, Receive, Scope, Send
from gateway.components import Components
from gateway.errors import ClientClosed, GatewayError, InvalidRequest, RequestTooLarge
from gateway.exchange import Answer, AnswerStream, Exchange
from gateway.policy.apis import ROUTES, Api
from gateway.proxy import error_answer
from gateway.startup import report_refusals

DATA_CLASS_HEADER = b"x-data-classification"
SINGLE_HEADERS = frozenset((b"authorization", DATA_CLASS_HEADER))
log = logging.getLogger("gateway.api")


class ProxiedRoutes:
    def __init__(self, app: ASGIApp, parts: Components, ids: RequestIds) -> None:
        self.app = app
        self.parts = parts
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            api = ROUTES.get(scope["path"]) if scope["method"] == "POST" else None
            if api is not None:
                request_id = self.ids.of(scope)
                try:
                    await self._serve(api, request_id, scope, receive, send)
                except Exception:  # a bug: logged, and answered if nothing was sent yet
                    log.exception("request failed", extra={"request_id": request_id})
                    error = GatewayError("The gateway failed to handle this request")
                    id_header = (REQUEST_ID_HEADER, request_id.encode())
                    with contextlib.suppress(Exception):  # the answer may be under way already
                        await _send_error(error, id_header, send)
                return
            repeated = _repeated_header(scope["headers"])
            if repeated is not None:
                id_header = (REQUEST_ID_HEADER, self.ids.of(scope).encode())
                await _send_error(repeated, id_header, send)
                return
        elif scope["type"] == "lifespan":
            await report_refusals(self.app, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _serve(
        self, api: Api, request_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        authorization = declared = data_class = None
        repeated = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                repeated = repeated or authorization is not None
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == DATA_CLASS_HEADER:
                repeated = repeated or data_class is not None
                data_class = value.decode("latin-1")
        if repeated:
            error = _repeated_header(scope["headers"])
            assert error is not None
            await _send_error(error, id_header, send)
            return
        parts = self.parts
        try:
            principal = parts.keys.authenticate(authorization)
        except GatewayError as exc:
            await _send_error(exc, id_header, send)
            return
        answer = await parts.proxy.handle(
            Exchange(request_id, self.ids.decision(), principal, api),
            read_body=lambda: _read_body(receive, parts.settings.max_body_bytes, declared),
            data_class=data_class,
            watch=lambda answer: _unless_client_leaves(answer, receive),
        )
        if answer.unsent:  # recorded; there is no one to answer
            return
        answer.headers.append(id_header)
        if answer.stream is not None:
            await _send_stream(answer, answer.stream, receive, send)
        else:
            await _send(answer, send)


async def _unless_client_leaves(answer: Awaitable[Answer], receive: Receive) -> Answer:
    """Await the answer, but cancel it (and the upstream request under it) if the client goes
    away first: a client that leaves before its answer or its stream's first byte is recorded as
    499, not as a success with the full duration."""
    task = asyncio.current_task()
    assert task is not None
    left = False
    waiting = True

    async def watch() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            continue
        left = True
        if waiting:
            task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        result = await answer
    except asyncio.CancelledError:
        if not left:
            raise
        task.uncancel()
        raise ClientClosed("The client closed the connection before its answer") from None
    finally:
        waiting = False
        watcher.cancel()
    if left:  # the client left just as the answer came in
        if task.cancelling():
            task.uncancel()
        if result.stream is None:  # (a stream's relay sees the client gone, and records it)
            raise ClientClosed("The client closed the connection before its answer")
    return result


def _repeated_header(headers: Iterable[tuple[bytes, bytes]]) -> InvalidRequest | None:
    """A request with two `authorization` or two `x-data-classification` headers is ambiguous
    (servers and proxies disagree on which one wins), so it is refused on every route."""
    seen: set[bytes] = set()
    for name, _ in headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                header = name.decode()
                return InvalidRequest(
                    f"The {header} header was sent more than once; send it once",
                    param=header,
                    code="duplicate_header",
                )
            seen.add(name)
    return None


async def _send_stream(answer: Answer, stream: AnswerStream, receive: Receive, send: Send) -> None:
    """Relay a stream event by event. A client that goes away while the upstream is still sending
    cancels the relay, which closes the upstream stream and records the request as closed by the
    client: one watcher task per stream, where a framework's task group costs several times more.
    The watcher goes once the upstream has ended: the request is then recorded as relayed, once,
    whether or not the client stays for the final `[DONE]` (a short stream's watcher never runs)."""
    relay = asyncio.current_task()
    assert relay is not None
    upstream_ended = False

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            continue
        if not upstream_ended:
            relay.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        async for chunk in stream.events():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        upstream_ended = True
        watcher.cancel()  # nothing left to stop: the record waits for no client
        last = await stream.end()
        await send({"type": "http.response.body", "body": last, "more_body": False})
    except asyncio.CancelledError:
        if not (watcher.done() and not watcher.cancelled()):
            raise  # cancelled from outside (shutdown), not by the client leaving
        relay.uncancel()
    finally:
        upstream_ended = True
        watcher.cancel()
        await stream.aclose()


async def _read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(
            f"Request body of {declared.decode()} bytes exceeds the limit of {limit}"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientClosed("The client closed the connection before sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(answer: Answer, send: Send) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _send_error(exc: GatewayError, id_header: tuple[bytes, bytes], send: Send) -> None:
    answer = error_answer(exc)
    answer.headers.append(id_header)
    await _send(answer, send)
