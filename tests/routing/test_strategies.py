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
    health = HealthTracker(2, 5.0, 12.0, clock, lambda e: ejected.append(e.seconds))
    for _ in range(3):  # three ejections in a row
        health.failure(A.id, "http_503")
        health.failure(A.id, "http_503")
        assert not health.healthy(A)
        assert "2 failures in a row (http_503)" in (health.problem(A) or "")
        clock.now += 100
        assert health.healthy(A)
    assert ejected == [5.0, 10.0, 12.0]


def test_a_success_between_failures_resets_the_count() -> None:
    health = HealthTracker(2, 5.0, 300.0, Clock())
    health.failure(A.id, "upstream_timeout")
    health.success(A.id)
    health.failure(A.id, "upstream_timeout")
    assert health.healthy(A)


def test_a_failed_probe_takes_the_backend_out_until_it_passes() -> None:
    health = HealthTracker(clock=Clock())
    health.backend_probed("a", "ClientConnectorError")
    assert health.problem(A) == "health probe of a failed: ClientConnectorError"
    assert health.healthy(B)
    health.backend_probed("a", None)
    assert health.healthy(A)
