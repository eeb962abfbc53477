"""Order eligible deployments for attempts: priority tiers first, then least load per weight.

The result is a permutation of (a subset of) the eligible deployments given: selection can only
narrow and order, never widen, which is what keeps failover inside policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

from gateway.policy.schema import Deployment
from gateway.routing.load import LoadTracker


class PriorityLeastLoaded:
    def __init__(self, load: LoadTracker) -> None:
        self._load = load
        self._turn = count()

    def order(self, eligible: Sequence[Deployment]) -> list[Deployment]:
        if len(eligible) <= 1:
            return list(eligible)
        turn = next(self._turn)
        n = len(eligible)

        def key(item: tuple[int, Deployment]) -> tuple[int, float, int]:
            i, dep = item
            return (dep.priority, self._load.outstanding(dep.id) / dep.weight, (i + turn) % n)

        return [dep for _, dep in sorted(enumerate(eligible), key=key)]
