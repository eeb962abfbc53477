"""OpenAI-compatible upstreams (vLLM, most EU providers): bytes in, bytes out, a pooled client.

The upstream leg runs on the gateway's own HTTP/1.1 client (`http1/`); its transport errors
are translated here, at the boundary, into the gateway's errors.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.upstream.base import UpstreamReply
from gateway.upstream.errors import status_error
from gateway.upstream.http1 import ConnectFailed, HTTPClient, HTTPClientError, ReadTimeout, Response

MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    first_byte_s: float
    idle_s: float


class _Stream:
    def __init__(self, response: Response, name: str) -> None:
        self._response = response
        self._name = name

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.chunks(self._broken)

    def _broken(self, exc: HTTPClientError) -> GatewayError:
        return _translate(exc, self._name, "broke the stream")

    async def aclose(self) -> None:
        # an unfinished body takes its connection down: it never goes back to the pool
        self._response.close()


class OpenAICompatibleUpstream:
    def __init__(
        self,
        name: str,
        base_url: str,
        timeouts: Timeouts,
        pool_size: int,
        api_key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = HTTPClient(
            base_url,
            pool_size=pool_size,
            connect_s=timeouts.connect_s,
            first_byte_s=timeouts.first_byte_s,
            idle_s=timeouts.idle_s,
            headers=headers,
            ssl_context=ssl_context,
        )

    async def _open(self, path: str, body: bytes, whole: bool) -> Response:
        try:
            response = await self._client.request("POST", path, body, whole=whole)
        except HTTPClientError as exc:
            raise _translate(exc, self.name, "failed") from exc
        if response.status >= 400:
            try:
                data = (await response.read())[:MAX_ERROR_BODY]
            except HTTPClientError:
                data = b""
            finally:
                response.close()
            raise status_error(response.status, data, response.headers.get("retry-after"))
        return response

    async def send(self, path: str, body: bytes) -> UpstreamReply:
        response = await self._open(path, body, whole=True)
        try:
            data = await response.read()
        except HTTPClientError as exc:
            raise _translate(exc, self.name, "broke the response") from exc
        finally:
            response.close()
        return UpstreamReply(response.status, data, response.content_type)

    async def stream(self, path: str, body: bytes) -> _Stream:
        return _Stream(await self._open(path, body, whole=False), self.name)

    async def aclose(self) -> None:
        await self._client.aclose()


def _translate(exc: HTTPClientError, name: str, what: str) -> GatewayError:
    if isinstance(exc, ConnectFailed):
        return UpstreamError(f"cannot connect to {name}", code="upstream_connect_error")
    if isinstance(exc, ReadTimeout):
        return UpstreamTimeout(f"{name}: {exc}")
    return UpstreamError(f"{name} {what}: {exc}")
