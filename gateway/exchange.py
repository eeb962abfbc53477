"""One request's state, from authentication to its audit record: `Exchange`, its `Attempt`s, the
`Answer` that goes back, and the `AnswerStream` protocol of a streamed answer.

The request path fills an `Exchange`; the audit record and the metrics are made from it. This
module imports nothing of the request path, the audit log or the metrics: they import it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from gateway.auth.keys import Principal
from gateway.errors import GatewayError
from gateway.limits.gate import Admission
from gateway.policy.apis import Api
from gateway.policy.compile import CompiledPolicy
from gateway.policy.decision import Decision
from gateway.policy.schema import Deployment
from gateway.upstream.sse import Usage

RawHeaders = list[tuple[bytes, bytes]]


class AnswerStream(Protocol):
    """A streamed answer, relayed in two phases, so that the HTTP layer knows when a client that
    leaves can still stop something:

    1. `events()`: the upstream's events as they come. A client that leaves now cancels the
       relay; an upstream that breaks ends it with an error event.
    2. `end()`, once `events()` is exhausted: the upstream has ended, nothing is left to stop.
       It commits the request's record and returns the bytes that end the response: the final
       `data: [DONE]`, or an error event when the record could not be committed.

    `aclose()` comes last, always: it closes the upstream and records a request whose end never
    came (its client left: `ClientClosed`, 499)."""

    def events(self) -> AsyncIterator[bytes]: ...

    async def end(self) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Answer:
    """What goes back to the client: a status, raw headers, and a body or a stream. An answer
    to a client that has left (`unsent`) is recorded, never sent."""

    status: int
    headers: RawHeaders
    body: bytes = b""
    stream: AnswerStream | None = None
    unsent: bool = False


@dataclass(slots=True)
class Attempt:
    deployment: str
    outcome: str
    duration_s: float


@dataclass(slots=True)
class Exchange:
    """What happened to one request; the audit record and metrics are made from it."""

    request_id: str
    decision_id: str
    principal: Principal
    api: Api
    model: str | None = None
    stream: bool = False
    policy: CompiledPolicy | None = None
    decision: Decision | None = None
    deployment: Deployment | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    status: int = 0
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    request_body: bytes = b""
    response_body: bytes | bytearray = b""
    first_byte_s: float | None = None
    error: GatewayError | None = None
    admitted_seq: int | None = None  # a stream's admission record, once committed
    admission: Admission | None = None

    def fail(self, error: GatewayError) -> None:
        """The request ends with `error`, as its status says."""
        self.error = error
        self.status = error.status
