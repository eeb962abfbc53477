"""The request path after authentication: limits, policy, routing, upstream, and the reply.

HTTP framing stays in `api/`; this module takes bytes and a principal and returns an `Answer`
(status, raw headers, and a body or a stream of chunks), so the whole path is testable without a
socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.audit.log import AuditLog
from gateway.auth.keys import Principal
from gateway.errors import (
    AuditUnavailable,
    GatewayError,
    InvalidJSON,
    InvalidRequest,
    ModelNotFound,
    NoHealthyBackend,
    NotImplementedByUpstream,
    PolicyViolation,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.limits.gate import Admission, Limits
from gateway.policy.compile import CompiledPolicy, Route
from gateway.policy.holder import PolicyHolder
from gateway.policy.schema import Api, Deployment
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker
from gateway.routing.select import PriorityLeastLoaded
from gateway.upstream.base import Upstream, UpstreamStream
from gateway.upstream.registry import Upstreams
from gateway.upstream.sse import SSEUsageFilter, Usage, error_event

UPSTREAM_PATHS = {
    Api.CHAT: "/chat/completions",
    Api.COMPLETIONS: "/completions",
    Api.EMBEDDINGS: "/embeddings",
    Api.RESPONSES: "/responses",
}
CLIENT_CLOSED = 499  # the client went away before the answer was complete (nginx's convention)
SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
RawHeaders = list[tuple[bytes, bytes]]
# the fields of a request body the gateway reads, and the JSON type each must have
READ_FIELDS = (("model", str), ("stream", bool), ("stream_options", dict), ("n", int))
JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "an object",
}
MAX_MODEL_CHARS = 256
MAX_DATA_CLASS_CHARS = 64


class LastChunk(bytes):
    """A stream's last chunk: sent together with the end of the response, in one write."""


class UpstreamEnded(bytes):
    """What a stream relays once its upstream has ended (possibly nothing): from here on a
    client that leaves cannot stop anything, and the request is recorded as relayed."""


@dataclass(slots=True)
class Answer:
    """What goes back to the client: a status, raw headers, and a body or a stream of chunks."""

    status: int
    headers: RawHeaders
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


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
    route: Route | None = None
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


class Proxy:
    def __init__(
        self,
        policy: PolicyHolder,
        upstreams: Upstreams,
        selector: PriorityLeastLoaded,
        load: LoadTracker,
        max_attempts: int,
        limits: Limits,
        audit: AuditLog,
        observe: Callable[[Exchange], None],
        health: HealthTracker,
        deadline_s: float,
        stream_first_byte_s: float | None = None,
    ) -> None:
        self._policy = policy
        self._upstreams = upstreams
        self._selector = selector
        self._load = load
        self._max_attempts = max_attempts
        self._limits = limits
        self._audit = audit
        self._observe = observe
        self._health = health
        self._deadline_s = deadline_s
        self._stream_first_byte_s = stream_first_byte_s

    async def plan(self, exchange: Exchange, body: bytes, data_class: str | None) -> dict[str, Any]:
        """Count the request against the tenant's limits, parse the few fields needed, decide
        under policy, and return the parsed body."""
        compiled = self._policy.current
        exchange.policy = compiled
        try:
            parsed: dict[str, Any] | GatewayError = _parse(body)
        except GatewayError as exc:
            parsed = exc
        # every authenticated request counts, refused or invalid: a tenant cannot fill the log
        exchange.admission = await self._limits.admit(
            exchange.principal,
            compiled,
            exchange.api,
            parsed if isinstance(parsed, dict) else None,
            len(body),
            exchange.request_id,
        )
        if isinstance(parsed, GatewayError):
            raise parsed
        data = parsed
        model = data["model"]
        exchange.model = model
        exchange.stream = data.get("stream") is True
        if data_class is not None and len(data_class) > MAX_DATA_CLASS_CHARS:
            raise InvalidRequest(
                f"The x-data-classification header is longer than {MAX_DATA_CLASS_CHARS}"
                " characters",
                param="x-data-classification",
                code="unknown_data_class",
            )
        if not compiled.has_tenant(exchange.principal.tenant):
            raise PolicyViolation(
                f"No policy is defined for tenant {exchange.principal.tenant!r}, so nothing is"
                " allowed",
                param="model",
                code="unknown_tenant",
                details={"decision_id": exchange.decision_id, "policy_revision": compiled.revision},
            )
        route = compiled.route(exchange.principal.tenant, model, data_class)
        exchange.route = route
        if not route.eligible:
            raise _refusal(route, exchange.decision_id)
        self._audit.require()
        return data

    async def forward(self, exchange: Exchange, data: dict[str, Any]) -> Answer:
        policy = exchange.policy
        assert policy is not None
        healthy = self._healthy_candidates(exchange)
        strip_usage = _ask_for_usage(exchange, data)
        last_error: GatewayError | None = None
        deadline = exchange.started + self._deadline_s
        tenant = exchange.principal.tenant
        for dep in self._selector.order(healthy)[: self._max_attempts]:
            left = deadline - time.perf_counter()
            if left <= 0:
                exchange.attempts.append(Attempt(dep.id, "deadline_exceeded", 0.0))
                break
            if not self._still_eligible(exchange, dep):
                exchange.attempts.append(Attempt(dep.id, "ineligible_after_reload", 0.0))
                continue
            data["model"] = dep.upstream_model
            body = orjson.dumps(data)
            began = time.perf_counter()
            since = self._health.now()
            limit = left
            if exchange.stream and self._stream_first_byte_s is not None:
                limit = min(self._stream_first_byte_s, left)
            try:
                response = await self._attempt(exchange, dep, body, strip_usage, limit)
            except TimeoutError:
                exchange.attempts.append(
                    Attempt(dep.id, "deadline_exceeded", time.perf_counter() - began)
                )
                break
            except GatewayError as exc:
                if isinstance(exc, AuditUnavailable):
                    raise  # the audit store failed, not the deployment: nothing to retry
                outcome = _outcome(exc)
                exchange.attempts.append(Attempt(dep.id, outcome, time.perf_counter() - began))
                if _counts_against_health(outcome):
                    self._health.failure(dep, outcome, tenant, since)
                    self._load.record_outcome(dep.id, failed=True)
                last_error = exc
                if isinstance(exc, UpstreamStatusError) and not exc.retryable:
                    raise
                continue
            took = time.perf_counter() - began
            exchange.attempts.append(Attempt(dep.id, "ok", took))
            self._load.record_latency(dep.id, took)
            if not exchange.stream:  # a stream succeeds only when it ends cleanly (_relay)
                self._health.success(dep, tenant)
                self._load.record_outcome(dep.id, failed=False)
            return response
        if any(a.outcome == "deadline_exceeded" for a in exchange.attempts):
            raise UpstreamTimeout(
                f"The request's overall deadline of {self._deadline_s:g} s passed", param="model"
            )
        if last_error is None:
            raise PolicyViolation(
                f"The policy changed during this request (now {self._policy.current.revision}) "
                f"and allows none of the deployments of {exchange.model!r} left to try",
                param="model",
                code="policy_changed",
                details={"decision_id": exchange.decision_id},
            )
        raise last_error

    async def _attempt(
        self, exchange: Exchange, dep: Deployment, body: bytes, strip_usage: bool, limit: float
    ) -> Answer:
        """One attempt on `dep`, cut after `limit` s: raises `UpstreamTimeout` when that was
        a stream's first-byte timeout, `TimeoutError` when it was the request's deadline."""
        assert exchange.policy is not None
        upstream = self._upstreams.for_backend(
            dep.backend, exchange.policy.policy.catalog.backends[dep.backend]
        )
        # _send and _open_stream count the request as outstanding until they settle
        self._load.start(dep.id)
        try:
            async with asyncio.timeout(limit):
                if exchange.stream:
                    return await self._open_stream(exchange, dep, upstream, body, strip_usage)
                return await self._send(exchange, dep, upstream, body)
        except TimeoutError:
            if exchange.stream and limit == self._stream_first_byte_s:
                raise UpstreamTimeout(
                    f"{dep.id} sent no first byte of the stream in {limit:g} s"
                ) from None
            raise

    def _healthy_candidates(self, exchange: Exchange) -> list[Deployment]:
        """The eligible deployments that serve this API and are healthy now; raises if none."""
        assert exchange.route is not None and exchange.policy is not None
        api = exchange.api
        backends = exchange.policy.policy.catalog.backends
        eligible = [d for d in exchange.route.eligible if api in backends[d.backend].apis]
        if not eligible:
            raise NotImplementedByUpstream(
                f"No deployment allowed for {exchange.model!r} supports /v1{UPSTREAM_PATHS[api]}",
                param="model",
            )
        tenant = exchange.principal.tenant
        problems = {d.id: self._health.problem(d, tenant) for d in eligible}
        healthy = [d for d in eligible if problems[d.id] is None]
        if not healthy:
            raise NoHealthyBackend(
                f"No eligible deployment of {exchange.model!r} is healthy: "
                + "; ".join(f"{dep}: {why}" for dep, why in problems.items()),
                param="model",
                details={
                    "decision_id": exchange.decision_id,
                    "deployments": [
                        {"deployment": dep, "reason": why} for dep, why in problems.items()
                    ],
                },
            )
        return healthy

    async def finish(self, exchange: Exchange) -> None:
        """Commit the audit record, then count and log the request with its final status."""
        self._settle_limits(exchange)
        try:
            await self._audit.record(exchange)
        except GatewayError as exc:
            exchange.error = exc
            exchange.status = exc.status
            self._observe(exchange)
            raise
        self._observe(exchange)

    def _still_eligible(self, exchange: Exchange, dep: Deployment) -> bool:
        """A request keeps the revision it started with, but a reload can only take away:
        a deployment the policy now in force does not allow is not tried any more."""
        route = exchange.route
        assert route is not None
        now = self._policy.current
        if now.revision == route.revision:
            return True
        if not now.has_tenant(route.tenant):
            return False
        try:
            current = now.route(route.tenant, route.requested, route.data_class)
        except GatewayError:
            return False
        return any(d.id == dep.id for d in current.eligible)

    async def _send(
        self, exchange: Exchange, dep: Deployment, upstream: Upstream, body: bytes
    ) -> Answer:
        try:
            reply = await upstream.send(UPSTREAM_PATHS[exchange.api], body)
        finally:
            self._load.finish(dep.id)
        exchange.deployment = dep
        exchange.status = reply.status
        exchange.first_byte_s = time.perf_counter() - exchange.started
        exchange.usage = _usage_of(reply.body)
        exchange.response_body = reply.body
        headers = self._headers(exchange, dep)
        headers.append((b"content-type", (reply.content_type or "application/json").encode()))
        headers.append((b"content-length", str(len(reply.body)).encode()))
        return Answer(reply.status, headers, reply.body)

    async def _open_stream(
        self,
        exchange: Exchange,
        dep: Deployment,
        upstream: Upstream,
        body: bytes,
        strip_usage: bool,
    ) -> Answer:
        try:
            stream = await upstream.stream(UPSTREAM_PATHS[exchange.api], body)
        except BaseException:
            self._load.finish(dep.id)
            raise
        chunks = stream.chunks()
        try:
            first = await anext(chunks, b"")
        except BaseException:
            self._load.finish(dep.id)
            await stream.aclose()
            raise
        exchange.deployment = dep
        exchange.status = 200
        exchange.first_byte_s = time.perf_counter() - exchange.started
        try:  # no byte reaches the client before the record of its admission is durable
            await self._audit.admit(exchange)
        except BaseException:
            self._load.finish(dep.id)
            await stream.aclose()
            raise
        relay = self._relay(exchange, dep, stream, chunks, first, strip_usage)
        headers = self._headers(exchange, dep)
        headers.extend(SSE_HEADERS)
        return Answer(200, headers, stream=relay)

    async def _relay(
        self,
        exchange: Exchange,
        dep: Deployment,
        stream: UpstreamStream,
        chunks: AsyncIterator[bytes],
        first: bytes,
        strip_usage: bool,
    ) -> AsyncIterator[bytes]:
        opened = self._health.now()
        sse = SSEUsageFilter(strip_usage)
        keep = self._audit.wants_content(exchange)
        content = bytearray()
        exchange.response_body = content
        recorded = False
        tail = b""

        def take(events: bytes) -> bytes:
            nonlocal tail
            out, done = _split_done(events)
            tail += done
            if keep:
                content.extend(out)
            return out

        try:
            out = take(sse.feed(first))
            if out:
                yield out
            async for chunk in chunks:
                out = take(sse.feed(chunk))
                if out:
                    yield out
            self._health.success(dep, exchange.principal.tenant)  # the upstream ended cleanly
            self._load.record_outcome(dep.id, failed=False)
            yield UpstreamEnded(take(sse.flush()))
            exchange.usage = sse.usage
            try:
                await self.finish(exchange)
            except GatewayError as exc:
                yield error_event(exc.envelope())
                recorded = True
                return
            recorded = True
            if tail:
                yield LastChunk(tail)
        except GatewayError as exc:
            # the upstream broke the stream or went idle after its first byte: that counts
            self._health.failure(dep, _broken(exc), exchange.principal.tenant, opened)
            self._load.record_outcome(dep.id, failed=True)
            exchange.error = exc
            exchange.status = exc.status
            yield error_event(exc.envelope())
        finally:
            if not recorded and exchange.error is None:
                exchange.status = CLIENT_CLOSED
            exchange.usage = sse.usage
            self._settle_limits(exchange)
            self._load.finish(dep.id)
            await stream.aclose()
            if not recorded:
                self._observe(exchange)
                self._audit.record_later(exchange)

    def _settle_limits(self, exchange: Exchange) -> None:
        """Give back the request's concurrency slot and charge its real tokens: its usage, else
        nothing when no upstream was reached, else (a cut stream) its estimate."""
        usage = exchange.usage
        if usage is not None:
            used: int | None = usage.prompt_tokens + usage.completion_tokens
        else:
            used = None if exchange.deployment is not None else 0
        self._limits.settle(exchange.admission, used)

    def _headers(self, exchange: Exchange, dep: Deployment) -> RawHeaders:
        assert exchange.route is not None and exchange.policy is not None
        backend = exchange.policy.policy.catalog.backends[dep.backend]
        headers = [
            (b"x-sovereign-deployment", dep.id.encode()),
            (b"x-sovereign-country", backend.country.encode()),
            (b"x-sovereign-decision-id", exchange.decision_id.encode()),
            (b"x-sovereign-policy-revision", exchange.route.revision.encode()),
        ]
        if exchange.admission is not None:
            headers.extend((k.encode(), v.encode()) for k, v in exchange.admission.headers.items())
        return headers


def _parse(body: bytes) -> dict[str, Any]:
    """The body as a JSON object whose fields the gateway reads have the right type and size;
    everything else in it passes through untouched."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    model = data.get("model")
    if model is None or model == "":
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    for name, expected in READ_FIELDS:
        value = data.get(name)
        if value is not None and not _is(value, expected):
            raise InvalidRequest(
                f"Invalid type for '{name}': expected {JSON_TYPES[expected]}, but got"
                f" {JSON_TYPES.get(type(value), 'a value')} instead",
                param=name,
                code="invalid_type",
            )
    if not model.strip():
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    if len(model) > MAX_MODEL_CHARS:
        raise InvalidRequest(
            f"The model name is longer than {MAX_MODEL_CHARS} characters",
            param="model",
            code="string_too_long",
        )
    return data


def _is(value: object, expected: type) -> bool:
    # bool is an int in Python, not in JSON: `"n": true` is not a number
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


def _split_done(events: bytes) -> tuple[bytes, bytes]:
    """Hold back the final `data: [DONE]` so it is sent only once the audit record is in."""
    for done in (b"data: [DONE]\n\n", b"data: [DONE]\r\n\r\n"):
        if events.endswith(done):
            return events[: -len(done)], done
    return events, b""


def _usage_of(body: bytes) -> Usage | None:
    if b'"usage"' not in body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_json(data.get("usage")) if isinstance(data, dict) else None


def _ask_for_usage(exchange: Exchange, data: dict[str, Any]) -> bool:
    """Ask a stream for its usage chunk; True when the client did not, so it is stripped."""
    if not exchange.stream or exchange.api not in (Api.CHAT, Api.COMPLETIONS):
        return False
    options = data.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    strip = options.get("include_usage") is not True
    options["include_usage"] = True
    data["stream_options"] = options
    return strip


def _counts_against_health(outcome: str) -> bool:
    """Connect errors, timeouts, 5xx and broken streams count towards ejection; 4xx and 429
    do not."""
    return outcome in (
        "upstream_connect_error",
        "upstream_timeout",
        "upstream_error",
        "stream_broken",
    ) or (outcome.startswith("http_5"))


def _broken(exc: GatewayError) -> str:
    """The outcome of a stream its upstream ended with an error after the first byte."""
    return "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "stream_broken"


def _outcome(exc: GatewayError) -> str:
    if isinstance(exc, UpstreamStatusError):
        return f"http_{exc.status}"
    return exc.code or type(exc).__name__


def _refusal(route: Route, decision_id: str) -> GatewayError:
    if not route.allow_listed:  # answered as an unknown model: the catalog is not disclosed
        return ModelNotFound(f"The model {route.requested!r} does not exist", param="model")
    results = route.candidates
    if not results:
        return NoHealthyBackend(f"Model {route.requested!r} has no deployment", param="model")
    candidates = [
        {
            "deployment": c.deployment.id,
            "failed": [{"rule": r.rule, "reason": r.reason} for r in c.failures()],
        }
        for c in results
    ]
    summary = "; ".join(
        f"{c.deployment.id}: " + ", ".join(f"{r.rule} ({r.reason})" for r in c.failures())
        for c in results
    )
    return PolicyViolation(
        f"Policy for tenant {route.tenant!r} allows no deployment of {route.requested!r}: "
        + summary,
        param="model",
        details={
            "decision_id": decision_id,
            "policy_revision": route.revision,
            "candidates": candidates,
        },
    )
