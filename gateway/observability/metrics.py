"""Prometheus metrics, in base units with unit suffixes and `_total` counters, and the
OpenTelemetry GenAI names where they fit (`gen_ai_client_token_usage`,
`gen_ai_server_time_to_first_token_seconds`, `gen_ai_server_time_per_output_token_seconds`, with
operation, provider and model labels).

Every metric lives in the gateway's own registry, made by `create_app`. Label values are bounded:
tenants can be dropped from labels or capped (the rest count as `other`), and no request id, key
id or free text ever becomes a label.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from gateway.routing.load import VLLMLoad

SECONDS_TO_MINUTES = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 120)
PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)
TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COMMIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
GENAI = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"]


class TenantLabel:
    """The tenant as a label value: as is for the first `cap` tenants seen, then `other`."""

    def __init__(self, enabled: bool, cap: int) -> None:
        self._enabled = enabled
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, tenant: str) -> str:
        if not self._enabled:
            return ""
        if tenant in self._seen:
            return tenant
        if len(self._seen) < self._cap:
            self._seen.add(tenant)
            return tenant
        return "other"


class RequestCounter(Collector):
    """A counter for the request path and the audit writer, kept as plain numbers per label values.

    prometheus_client's `labels()` takes a lock and checks its arguments on every call, and each
    child's `inc` takes another lock; everything here runs on the event loop's thread (the scrape
    too), so neither is needed. Exposed as prometheus_client exposes a Counter: `NAME_total` and
    `NAME_created` per child."""

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry
    ) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], list[float]] = {}  # [value, created]
        if not labelnames:  # as prometheus_client: an unlabelled metric reads 0 from the start
            self.inc((), 0)
        registry.register(self)

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = [0.0, time.time()]
        child[0] += amount

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for labels, (value, created) in list(self._children.items()):
            family.add_metric(labels, value, created=created)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield self._family()


class RequestHistogram(Collector):
    """A histogram for the request path and the audit writer, kept as plain numbers per label
    values: one bisect and two additions per observation. Exposed as prometheus_client exposes a
    Histogram (cumulative `le` buckets up to `+Inf`, `_count`, `_sum`, `_created`)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, labelnames
        self._bounds = tuple(float(b) for b in buckets)
        # the `le` text prometheus_client gives each bound (its helper has no annotations)
        self._les = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # type: ignore[no-untyped-call]
        # per child: a count per bucket (the last one past every bound), the sum, when created
        self._children: dict[tuple[str, ...], list[float]] = {}
        if not labelnames:  # as prometheus_client: an unlabelled metric reads 0 from the start
            self._child(())
        registry.register(self)

    def _child(self, labels: tuple[str, ...]) -> list[float]:
        child = self._children[labels] = [0.0] * (len(self._bounds) + 2) + [time.time()]
        return child

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._child(labels)
        child[bisect_left(self._bounds, value)] += 1  # `le`: a value on a bound counts in it
        child[-2] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for labels, child in list(self._children.items()):
            counts = accumulate(child[: len(self._les)])
            family.add_metric(labels, list(zip(self._les, counts, strict=True)), child[-2])
            names = dict(zip(self._labelnames, labels, strict=True))
            family.samples.append(Sample(f"{self._name}_created", names, child[-1]))
        yield family

    def describe(self) -> Iterable[Metric]:
        yield self._family()


@dataclass
class LiveGauges:
    """Values read when Prometheus scrapes, not kept up to date on the hot path."""

    outstanding: Callable[[], dict[str, int]]
    audit: Callable[[], dict[str, float] | None]
    healthy: Callable[[], dict[str, bool]]
    vllm: Callable[[], dict[str, VLLMLoad]]


class _LiveCollector(Collector):
    def __init__(self, live: LiveGauges) -> None:
        self._live = live

    def collect(self) -> Iterable[Metric]:
        outstanding = GaugeMetricFamily(
            "sgw_upstream_outstanding_requests",
            "Requests sent to a deployment and not finished",
            labels=["deployment"],
        )
        for deployment, count in sorted(self._live.outstanding().items()):
            outstanding.add_metric([deployment], count)
        yield outstanding
        health = GaugeMetricFamily(
            "sgw_deployment_healthy",
            "1 if a deployment may be used now (probe up, not ejected), else 0",
            labels=["deployment"],
        )
        for deployment, up in sorted(self._live.healthy().items()):
            health.add_metric([deployment], 1.0 if up else 0.0)
        yield health
        vllm = {
            name: GaugeMetricFamily(name, text, labels=["backend"])
            for name, text in (
                ("sgw_vllm_num_requests_running", "Requests running, last read from vLLM"),
                ("sgw_vllm_num_requests_waiting", "Requests queued, last read from vLLM"),
                ("sgw_vllm_kv_cache_usage_ratio", "KV-cache use (0 to 1), last read from vLLM"),
            )
        }
        for backend, load in sorted(self._live.vllm().items()):
            vllm["sgw_vllm_num_requests_running"].add_metric([backend], load.running)
            vllm["sgw_vllm_num_requests_waiting"].add_metric([backend], load.waiting)
            vllm["sgw_vllm_kv_cache_usage_ratio"].add_metric([backend], load.kv_cache_usage)
        yield from vllm.values()
        audit = self._live.audit()
        if audit is None:
            return
        for name, help_text in (
            ("sgw_audit_writer_up", "1 while the audit store takes records, else 0"),
            ("sgw_audit_backlog_records", "Records waiting for the audit writer"),
            ("sgw_audit_log_size_records", "Records in this replica's audit log"),
            ("sgw_audit_last_checkpoint_timestamp_seconds", "When the last checkpoint was signed"),
        ):
            yield GaugeMetricFamily(name, help_text, value=audit[name])

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    def __init__(self, tenant_label: bool = True, max_tenants: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tenant = TenantLabel(tenant_label, max_tenants)
        r = self.registry
        self.requests = RequestCounter(
            "sgw_requests",
            "Requests answered, by tenant, requested model, deployment used, its inference country"
            " and its operator's ultimate jurisdiction, and HTTP status",
            ["tenant", "model", "deployment", "country", "jurisdiction", "status"],
            registry=r,
        )
        self.duration = RequestHistogram(
            "sgw_request_duration_seconds",
            "Time from the request's arrival to its last byte",
            ["tenant", "api", "stream"],
            buckets=SECONDS_TO_MINUTES,
            registry=r,
        )
        self.ttft = RequestHistogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first byte of the answer (the first chunk of a stream)",
            GENAI,
            buckets=TTFT,
            registry=r,
        )
        self.per_token = RequestHistogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, for streams",
            GENAI,
            buckets=PER_TOKEN,
            registry=r,
        )
        self.tokens = RequestHistogram(
            "gen_ai_client_token_usage",
            "Tokens per request, input and output (gen_ai_token_type)",
            [*GENAI, "gen_ai_token_type"],
            buckets=TOKENS,
            registry=r,
        )
        self.errors = RequestCounter(
            "sgw_request_errors",
            "Requests answered with an error, by tenant and error code",
            ["tenant", "code"],
            registry=r,
        )
        self.decisions = RequestCounter(
            "sgw_policy_decisions",
            "Policy decisions by tenant, result (allowed, refused, error) and deciding rule",
            ["tenant", "result", "rule"],
            registry=r,
        )
        self.policy = Info("sgw_policy", "The policy revision in force", registry=r)
        self.reloads = Counter(
            "sgw_policy_reloads",
            "Policy reloads by trigger and result",
            ["trigger", "result"],
            registry=r,
        )
        self.last_reload_ok = Gauge(
            "sgw_policy_last_reload_success", "1 if the last reload succeeded, else 0", registry=r
        )
        self.last_reload_ok.set(1)
        self.ejections = Counter(
            "sgw_deployment_ejections",
            "Times a deployment was ejected after failures in a row",
            ["deployment"],
            registry=r,
        )
        self.failovers = Counter(
            "sgw_failovers",
            "Requests moved on from a deployment to the next eligible one",
            ["deployment"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "sgw_upstream_errors",
            "Failed attempts by deployment and kind (connect, timeout, http_5xx status...)",
            ["deployment", "kind"],
            registry=r,
        )
        self.limit_refusals = Counter(
            "sgw_limit_refusals",
            "Requests refused by a limit, by tenant and kind (requests_per_minute,"
            " tokens_per_minute, concurrent_requests, tokens_per_month, max_tokens,"
            " store_unavailable)",
            ["tenant", "kind"],
            registry=r,
        )
        self.limits_fail_open = Counter(
            "sgw_limits_fail_open",
            "Requests let through without any limit because the limits store could not be"
            " reached (limits_fail_open: true)",
            registry=r,
        )
        self.limits_store_errors = Counter(
            "sgw_limits_store_errors",
            "Calls to the limits store that failed or timed out, by operation (admit, settle)",
            ["operation"],
            registry=r,
        )
        self.audit_refusals = Counter(
            "sgw_audit_refusals",
            "Requests refused (503) because the audit store could not take records",
            registry=r,
        )
        self.audit_records = RequestCounter(
            "sgw_audit_records", "Audit records committed", [], registry=r
        )
        self.audit_batch = RequestHistogram(
            "sgw_audit_batch_size_records",
            "Records per group commit",
            [],
            buckets=BATCH,
            registry=r,
        )
        self.audit_commit = RequestHistogram(
            "sgw_audit_commit_duration_seconds",
            "Time to commit one batch durably",
            [],
            buckets=COMMIT,
            registry=r,
        )

    def watch(self, live: LiveGauges) -> None:
        self.registry.register(_LiveCollector(live))

    def audit_batch_committed(self, size: int, seconds: float) -> None:
        self.audit_records.inc((), size)
        self.audit_batch.observe((), size)
        self.audit_commit.observe((), seconds)
