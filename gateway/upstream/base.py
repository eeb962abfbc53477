"""The contract every upstream kind fulfils: `send`, `stream`, `aclose`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    body: bytes
    content_type: str


class UpstreamStream(Protocol):
    """An open upstream stream whose status was 2xx; iterate for raw bytes, then `aclose`."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def send(self, path: str, body: bytes) -> UpstreamReply:
        """POST `body` to `path`; raise a `GatewayError` on transport failure or error status."""
        ...

    async def stream(self, path: str, body: bytes) -> UpstreamStream:
        """POST and wait for the status line; raise before returning when it is an error."""
        ...

    async def aclose(self) -> None: ...
