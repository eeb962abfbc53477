"""The selection strategy and the health tracker on their own, with a fake clock."""

from __future__ import annotations

from gateway.policy.schema import Deployment
from gateway.routing.health import HealthTracker
from gateway.routing.load import LoadTracker, VLLMLoad
from gateway.routing.select import PriorityLeastLoaded


def dep(backend: str, priority: int = 0, weight: int = 1) -> Deployment:
    return Deployment(
        model="m", backend=backend, upstream_model="m", priority=priority, weight=weight
    )


A, B, C = dep("a"), dep("b"), dep("c", priority=1)


def test_priority_tiers_come_first_whatever_the_load() -> None:
    load = LoadTracker()
    for _ in range(50):
        load.start(A.id)
        load.start(B.id)
    assert PriorityLeastLoaded(load).order([C, A, B])[-1] == C


def test_least_outstanding_per_weight_wins_inside_a_tier() -> None:
    load = LoadTracker()
    heavy = dep("h", weight=4)
    for _ in range(3):
        load.start(A.id)
        load.start(heavy.id)
    # 3 outstanding on weight 4 beats 3 on weight 1
    assert PriorityLeastLoaded(load).order([A, heavy])[0] == heavy


def test_vllm_queue_and_kv_cache_count_as_load() -> None:
    load = LoadTracker()
    selector = PriorityLeastLoaded(load)
    load.set_vllm("a", VLLMLoad(running=2, waiting=10, kv_cache_usage=0.5))
    load.set_vllm("b", VLLMLoad(running=2, waiting=0, kv_cache_usage=0.1))
    assert [d.backend for d in selector.order([A, B])] == ["b", "a"]
    load.set_vllm("b", VLLMLoad(running=2, waiting=0, kv_cache_usage=1.0))  # full cache: +4
    load.set_vllm("a", VLLMLoad(running=2, waiting=1, kv_cache_usage=0.0))
    assert selector.order([A, B])[0] == A
    assert selector.score(A) == 3.0 and selector.score(B) == 6.0


def test_latency_breaks_ties_and_equal_deployments_take_turns() -> None:
    load = LoadTracker()
    selector = PriorityLeastLoaded(load)
    firsts = {selector.order([A, B])[0].backend for _ in range(4)}
    assert firsts == {"a", "b"}  # idle and equally fast: turn by turn
    load.record_latency(A.id, 0.30)
    load.record_latency(B.id, 0.05)
    assert {selector.order([A, B])[0].backend for _ in range(4)} == {"b"}


def test_recent_failures_weigh_against_a_deployment_that_fails_fast() -> None:
    clock = Clock()
    load = LoadTracker(clock)
    selector = PriorityLeastLoaded(load)
    for _ in range(3):
        load.start(A.id)
    for _ in range(4):  # B fails at once, so it has nothing outstanding and looks idle
        load.record_outcome(B.id, failed=True)
    assert selector.order([A, B])[0] == A
    clock.now += 60  # an old failure fades: B is tried again
    assert selector.order([A, B])[0] == B


def test_selection_never_adds_a_deployment() -> None:
    load = LoadTracker()
    ordered = PriorityLeastLoaded(load).order([B])
    assert ordered == [B]
    assert PriorityLeastLoaded(load).order([]) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ejection_time_doubles_with_repeats_and_is_capped() -> None:
    clock = Clock()
    ejected: list[float] = []
    health = HealthTracker(
        consecutive_failures=2,
        base_ejection_s=5.0,
        max_ejection_s=12.0,
        clock=clock,
        on_ejection=lambda e: ejected.append(e.seconds),
    )
    health.failure(A, "http_503")
    health.failure(A, "http_503")
    assert "2 failures in a row (http_503)" in (health.problem(A) or "")
    for _ in range(2):  # back on trial: its next failure ejects it again, for longer
        clock.now += 100
        assert health.healthy(A)
        health.failure(A, "http_503")
        assert "after a failure on trial (http_503)" in (health.problem(A) or "")
    assert ejected == [5.0, 10.0, 12.0]


def test_a_success_between_failures_resets_the_count() -> None:
    health = HealthTracker(
        consecutive_failures=2, base_ejection_s=5.0, max_ejection_s=300.0, clock=Clock()
    )
    health.failure(A, "upstream_timeout")
    health.success(A)
    health.failure(A, "upstream_timeout")
    assert health.healthy(A)


def test_failures_in_flight_when_it_was_ejected_do_not_double_the_time() -> None:
    clock = Clock()
    ejected: list[float] = []
    health = HealthTracker(
        consecutive_failures=2,
        base_ejection_s=5.0,
        max_ejection_s=300.0,
        clock=clock,
        on_ejection=lambda e: ejected.append(e.seconds),
    )
    began = clock.now
    clock.now += 1
    for _ in range(10):  # ten concurrent attempts fail, one after the other
        health.failure(A, "upstream_error", since=began)
    clock.now += 5
    health.failure(A, "upstream_error", since=began)  # the last one, after the ejection ended
    assert ejected == [5.0] and health.healthy(A)
    health.success(A)
    clock.now += 1
    health.failure(A, "upstream_error")  # a success reset the backoff: two failures again
    assert health.healthy(A)


def test_a_passing_probe_readmits_a_deployment_ejected_for_connection_failures() -> None:
    clock = Clock()
    health = HealthTracker(
        consecutive_failures=2, base_ejection_s=60.0, max_ejection_s=300.0, clock=clock
    )
    health.failure(A, "upstream_connect_error")
    health.failure(A, "upstream_connect_error")
    health.failure(B, "http_500")
    health.failure(B, "http_500", tenant="t2")
    assert not health.healthy(A) and not health.healthy(B)
    health.backend_probed("a", None, started=clock.now - 1)  # began before the ejection
    assert not health.healthy(A)
    clock.now += 1
    health.backend_probed("a", None, started=clock.now)
    health.backend_probed("b", None, started=clock.now)
    assert health.healthy(A)
    assert not health.healthy(B)  # a 5xx answer is not something a probe sees heal


def test_one_tenants_failures_eject_a_deployment_for_that_tenant_only() -> None:
    health = HealthTracker(
        consecutive_failures=2, base_ejection_s=5.0, max_ejection_s=300.0, clock=Clock()
    )
    for _ in range(5):
        health.failure(A, "http_500", tenant="noisy")
    assert health.problem(A, "noisy") is not None
    assert "for tenant noisy" in (health.problem(A, "noisy") or "")
    assert health.problem(A, "quiet") is None and health.healthy(A)
    health.failure(A, "http_500", tenant="other")
    health.failure(A, "http_500", tenant="other")  # a second tenant in the streak: everyone
    assert health.problem(A, "quiet") is not None


def test_connect_errors_eject_for_every_tenant() -> None:
    health = HealthTracker(
        consecutive_failures=2, base_ejection_s=5.0, max_ejection_s=300.0, clock=Clock()
    )
    health.failure(A, "upstream_connect_error", tenant="one")
    health.failure(A, "upstream_connect_error", tenant="one")
    assert health.problem(A, "two") is not None


def test_a_failed_probe_takes_the_backend_out_until_it_passes() -> None:
    health = HealthTracker(clock=Clock())
    health.backend_probed("a", "ClientConnectorError")
    assert health.problem(A) == "health probe of a failed: ClientConnectorError"
    assert health.healthy(B)
    health.backend_probed("a", None)
    assert health.healthy(A)
