"""The request path after authentication: `Proxy.handle` reads the body, counts the request
against its limits, decides under policy, forwards to an eligible deployment (failing over while
the deadline allows), relays the answer and records it. Refusals and failures are recorded and
answered here too.

HTTP framing stays in `api/`: `handle` takes the exchange, a way to read the body and a way to
watch the client, and returns an `Answer` (status, raw headers, and a body or a stream), so the
whole path is testable without a socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.audit.log import AuditLog
from gateway.errors import (
    AuditUnavailable,
    ClientClosed,
    GatewayError,
    InvalidJSON,
    InvalidRequest,
    NoHealthyBackend,
    NotImplementedByUpstream,
    PolicyViolation,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.exchange import Answer, Attempt, Exchange, RawHeaders
from gateway.limits.gate import Limits
from gateway.policy.apis import API
from gateway.policy.decision import Decision
from gateway.policy.holder import PolicyHolder
from gateway.policy.schema import Deployment
from gateway.relay import StreamRelay
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker
from gateway.routing.select import PriorityLeastLoaded
from gateway.upstream.base import Upstream
from gateway.upstream.registry import Upstreams
from gateway.upstream.sse import Usage

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
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
log = logging.getLogger("gateway.api")

ReadBody = Callable[[], Awaitable[bytes]]
# awaits an answer, or raises `ClientClosed` (cancelling it) if the client leaves first
Watch = Callable[[Awaitable[Answer]], Awaitable[Answer]]


class Proxy:
    def __init__(
        self,
        *,
        policy: PolicyHolder,
        upstreams: Upstreams,
        selector: PriorityLeastLoaded,
        load: LoadTracker,
        health: HealthTracker,
        limits: Limits,
        audit: AuditLog,
        observe: Callable[[Exchange], None],
        max_attempts: int,
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

    async def handle(
        self, exchange: Exchange, *, read_body: ReadBody, data_class: str | None, watch: Watch
    ) -> Answer:
        """The whole request: its answer, or its refusal; recorded either way. A stream records
        itself when it ends (`StreamRelay`)."""
        try:
            body = await read_body()
            exchange.request_body = body
            data = await self._plan(exchange, body, data_class)
            answer = await watch(self._forward(exchange, data))
        except GatewayError as exc:
            return await self._refuse(exchange, exc)
        except Exception:
            log.exception("request failed", extra={"request_id": exchange.request_id})
            failure = GatewayError("The gateway failed to handle this request")
            return await self._refuse(exchange, failure)
        if answer.stream is None:
            try:
                await self._finish(exchange)
            except GatewayError as exc:  # no record, no answer: the upstream's reply is dropped
                return error_answer(exc)
        return answer

    async def _refuse(self, exchange: Exchange, exc: GatewayError) -> Answer:
        """Record a refusal or failure, then answer it: the error goes out once its record is in."""
        exchange.fail(exc)
        try:
            await self._finish(exchange)
        except GatewayError as failure:  # the record could not be committed
            return error_answer(failure)
        answer = error_answer(exc)
        answer.unsent = isinstance(exc, ClientClosed)  # recorded; there is no one to answer
        return answer

    async def _plan(
        self, exchange: Exchange, body: bytes, data_class: str | None
    ) -> dict[str, Any]:
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
        decision = Decision(compiled.route(exchange.principal.tenant, model, data_class))
        exchange.decision = decision
        if not decision.allowed:
            raise decision.error(exchange.decision_id)
        self._audit.require()
        return data

    async def _forward(self, exchange: Exchange, data: dict[str, Any]) -> Answer:
        decision = exchange.decision
        assert decision is not None
        healthy = self._healthy_candidates(exchange, decision)
        strip_usage = _ask_for_usage(exchange, data)
        last_error: GatewayError | None = None
        deadline = exchange.started + self._deadline_s
        tenant = exchange.principal.tenant
        for dep in self._selector.order(healthy)[: self._max_attempts]:
            left = deadline - time.perf_counter()
            if left <= 0:
                exchange.attempts.append(Attempt(dep.id, "deadline_exceeded", 0.0))
                break
            if not self._still_eligible(decision, dep):
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
            if not exchange.stream:  # a stream succeeds only when it ends cleanly (the relay)
                self._health.success(dep, tenant)
                self._load.record_outcome(dep.id, failed=False)
            return response
        raise self._gave_up(exchange, decision, last_error)

    def _gave_up(
        self, exchange: Exchange, decision: Decision, last_error: GatewayError | None
    ) -> GatewayError:
        """Why no attempt answered: the deadline, the policy that changed, or the last error."""
        if any(a.outcome == "deadline_exceeded" for a in exchange.attempts):
            return UpstreamTimeout(
                f"The request's overall deadline of {self._deadline_s:g} s passed", param="model"
            )
        if last_error is None:  # every deployment left was taken away by a reload
            exchange.decision = decision.after_reload(self._policy.current.revision)
            return exchange.decision.error(exchange.decision_id)
        return last_error

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

    def _healthy_candidates(self, exchange: Exchange, decision: Decision) -> list[Deployment]:
        """The eligible deployments that serve this API and are healthy now; raises if none."""
        assert exchange.policy is not None
        api = exchange.api
        backends = exchange.policy.policy.catalog.backends
        eligible = [d for d in decision.route.eligible if api in backends[d.backend].apis]
        if not eligible:
            raise NotImplementedByUpstream(
                f"No deployment allowed for {exchange.model!r} supports {API[api].route}",
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

    async def _finish(self, exchange: Exchange) -> None:
        """Commit the audit record, then count and log the request with its final status."""
        self._settle_limits(exchange)
        try:
            await self._audit.record(exchange)
        except GatewayError as exc:
            exchange.fail(exc)
            self._observe(exchange)
            raise
        self._observe(exchange)

    def _abandon(self, exchange: Exchange) -> None:
        """A stream whose end nobody waits for (its client left, or its upstream broke): count
        and log it, and record it in the background."""
        self._settle_limits(exchange)
        self._observe(exchange)
        self._audit.record_later(exchange)

    def _still_eligible(self, decision: Decision, dep: Deployment) -> bool:
        """A request keeps the revision it started with, but a reload can only take away:
        a deployment the policy now in force does not allow is not tried any more."""
        route = decision.route
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
            reply = await upstream.send(API[exchange.api].upstream_path, body)
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
            stream = await upstream.stream(API[exchange.api].upstream_path, body)
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
        relay = StreamRelay(
            exchange=exchange,
            deployment=dep,
            upstream=stream,
            chunks=chunks,
            first=first,
            strip_usage=strip_usage,
            keep_content=self._audit.wants_content(exchange),
            health=self._health,
            load=self._load,
            finish=self._finish,
            abandon=self._abandon,
        )
        headers = self._headers(exchange, dep)
        headers.extend(SSE_HEADERS)
        return Answer(200, headers, stream=relay)

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
        assert exchange.decision is not None and exchange.policy is not None
        backend = exchange.policy.policy.catalog.backends[dep.backend]
        headers = [
            (b"x-sovereign-deployment", dep.id.encode()),
            (b"x-sovereign-country", backend.country.encode()),
            (b"x-sovereign-decision-id", exchange.decision_id.encode()),
            (b"x-sovereign-policy-revision", exchange.decision.route.revision.encode()),
        ]
        if exchange.admission is not None:
            headers.extend((k.encode(), v.encode()) for k, v in exchange.admission.headers.items())
        return headers


def error_answer(exc: GatewayError) -> Answer:
    """An error in the OpenAI shape, with its status and headers (`Retry-After`...)."""
    body = exc.body()
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"content-type", b"application/json"))
    return Answer(exc.status, headers, body)


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
    if not exchange.stream or not API[exchange.api].stream_usage:
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


def _outcome(exc: GatewayError) -> str:
    if isinstance(exc, UpstreamStatusError):
        return f"http_{exc.status}"
    return exc.code or type(exc).__name__
