"""Order eligible deployments for attempts: priority tiers first, then least load per weight,
then the lower latency average, then turn by turn.

Load is this gateway's outstanding requests, or for a vLLM backend whose `/metrics` was read,
the larger of those and the requests it runs, plus its queue, plus a penalty as its KV cache fills,
plus a penalty for its recent failures: a deployment that fails fast has few requests outstanding
and a low latency, and without it would be sent more traffic than a healthy one.
The result is a permutation of (a subset of) the eligible deployments given: selection can only
narrow and order, never widen, which is what keeps failover inside policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

from gateway.policy.schema import Deployment
from gateway.routing.load import LoadTracker

KV_CACHE_PENALTY = 4.0  # a full KV cache weighs like four queued requests
FAILURE_PENALTY = 8.0  # a deployment whose attempts all failed lately weighs like eight more


class PriorityLeastLoaded:
    def __init__(self, load: LoadTracker) -> None:
        self._load = load
        self._turn = count()

    def score(self, dep: Deployment) -> float:
        outstanding = float(self._load.outstanding(dep.id))
        failing = FAILURE_PENALTY * self._load.failure_rate(dep.id)
        vllm = self._load.vllm(dep.backend)
        if vllm is None:
            return (outstanding + failing) / dep.weight
        busy = max(outstanding, vllm.running) + vllm.waiting
        return (busy + KV_CACHE_PENALTY * vllm.kv_cache_usage + failing) / dep.weight

    def order(self, eligible: Sequence[Deployment]) -> list[Deployment]:
        if len(eligible) <= 1:
            return list(eligible)
        turn = next(self._turn)
        n = len(eligible)

        def key(item: tuple[int, Deployment]) -> tuple[int, float, float, int]:
            i, dep = item
            latency = round(self._load.latency(dep.id), 2)  # 10 ms steps: noise is a tie
            return (dep.priority, self.score(dep), latency, (i + turn) % n)

        return [dep for _, dep in sorted(enumerate(eligible), key=key)]
