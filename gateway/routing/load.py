"""Load per deployment as the router sees it: requests outstanding from this gateway, the queue
and KV-cache figures last read from a vLLM backend's `/metrics`, a latency average, and the share
of its recent attempts that failed (so a deployment that fails fast does not look idle)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LATENCY_WEIGHT = 0.2  # exponentially weighted moving average of time to first byte
FAILURE_WEIGHT = 0.3  # the same for failures (1) and successes (0) of attempts
FAILURE_HALF_LIFE_S = 2.0  # a failure rate nobody updates fades: an idle deployment is retried
FAILURE_FLOOR = 0.1  # below this a failure rate is forgotten (it never reaches 0 by halving)


@dataclass(frozen=True)
class VLLMLoad:
    running: float
    waiting: float
    kv_cache_usage: float  # 0..1


class LoadTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._outstanding: dict[str, int] = {}
        self._latency: dict[str, float] = {}
        self._failures: dict[str, tuple[float, float]] = {}  # rate, when it was last updated
        self._vllm: dict[str, VLLMLoad] = {}

    def outstanding(self, deployment_id: str) -> int:
        return self._outstanding.get(deployment_id, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._outstanding)

    def start(self, deployment_id: str) -> None:
        self._outstanding[deployment_id] = self._outstanding.get(deployment_id, 0) + 1

    def finish(self, deployment_id: str) -> None:
        self._outstanding[deployment_id] = max(0, self._outstanding.get(deployment_id, 0) - 1)

    def record_latency(self, deployment_id: str, seconds: float) -> None:
        before = self._latency.get(deployment_id)
        self._latency[deployment_id] = (
            seconds if before is None else before + LATENCY_WEIGHT * (seconds - before)
        )

    def latency(self, deployment_id: str) -> float:
        return self._latency.get(deployment_id, 0.0)

    def record_outcome(self, deployment_id: str, failed: bool) -> None:
        rate = self.failure_rate(deployment_id)
        rate += FAILURE_WEIGHT * ((1.0 if failed else 0.0) - rate)
        self._failures[deployment_id] = (rate, self._clock())

    def forget_failures(self, deployment_id: str) -> None:
        """The deployment was re-admitted after a passing probe: its past failures are moot."""
        self._failures.pop(deployment_id, None)

    def failure_rate(self, deployment_id: str) -> float:
        """0..1: how many of the deployment's recent attempts failed, fading with time."""
        found = self._failures.get(deployment_id)
        if found is None:
            return 0.0
        rate, at = found
        rate *= float(0.5 ** ((self._clock() - at) / FAILURE_HALF_LIFE_S))
        return rate if rate >= FAILURE_FLOOR else 0.0

    def set_vllm(self, backend: str, load: VLLMLoad | None) -> None:
        if load is None:
            self._vllm.pop(backend, None)
        else:
            self._vllm[backend] = load

    def vllm(self, backend: str) -> VLLMLoad | None:
        return self._vllm.get(backend)

    def vllm_snapshot(self) -> dict[str, VLLMLoad]:
        return dict(self._vllm)
