"""Which deployments are healthy: active probes per backend, passive outlier ejection per
deployment.

Passive: `outlier_consecutive_failures` connect errors, timeouts or 5xx in a row eject a
deployment for `base * 2^(n-1)` seconds (n: its ejections so far, capped at `max`); when that time
is over it is tried again, and one success resets its history. Active: a probe loop marks a backend
down while its `/health` (vLLM) or `/v1/models` (other kinds) fails. Health only ever narrows the
eligible set: with nothing healthy left the answer is 503 `no_healthy_backend`, never a deployment
outside policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.policy.schema import Deployment


@dataclass
class _Outlier:
    consecutive: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    last_failure: str = ""


@dataclass(frozen=True)
class Ejection:
    deployment: str
    seconds: float
    reason: str


class HealthTracker:
    def __init__(
        self,
        consecutive_failures: int = 5,
        base_ejection_s: float = 5.0,
        max_ejection_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_ejection: Callable[[Ejection], None] | None = None,
    ) -> None:
        self._threshold = consecutive_failures
        self._base = base_ejection_s
        self._max = max_ejection_s
        self._clock = clock
        self._on_ejection = on_ejection
        self._outliers: dict[str, _Outlier] = {}
        self._backends_down: dict[str, str] = {}

    # ---- passive ---------------------------------------------------------------------------

    def success(self, deployment_id: str) -> None:
        outlier = self._outliers.get(deployment_id)
        if outlier is not None and outlier.ejected_until <= self._clock():
            del self._outliers[deployment_id]

    def failure(self, deployment_id: str, reason: str) -> None:
        outlier = self._outliers.setdefault(deployment_id, _Outlier())
        outlier.consecutive += 1
        outlier.last_failure = reason
        if outlier.consecutive < self._threshold:
            return
        outlier.ejections += 1
        seconds = min(self._base * 2 ** (outlier.ejections - 1), self._max)
        outlier.ejected_until = self._clock() + seconds
        outlier.consecutive = 0
        if self._on_ejection is not None:
            self._on_ejection(Ejection(deployment_id, seconds, reason))

    # ---- active ----------------------------------------------------------------------------

    def backend_probed(self, backend: str, problem: str | None) -> None:
        if problem is None:
            self._backends_down.pop(backend, None)
        else:
            self._backends_down[backend] = problem

    # ---- reading ---------------------------------------------------------------------------

    def problem(self, dep: Deployment) -> str | None:
        """Why `dep` may not be used now, or None when it is healthy."""
        down = self._backends_down.get(dep.backend)
        if down is not None:
            return f"health probe of {dep.backend} failed: {down}"
        outlier = self._outliers.get(dep.id)
        if outlier is not None:
            left = outlier.ejected_until - self._clock()
            if left > 0:
                return (
                    f"ejected for {left:.0f} more s after {self._threshold} failures in a row"
                    f" ({outlier.last_failure})"
                )
        return None

    def healthy(self, dep: Deployment) -> bool:
        return self.problem(dep) is None

    def snapshot(self, deployments: list[Deployment]) -> dict[str, bool]:
        return {d.id: self.healthy(d) for d in deployments}

    def backends_down(self) -> dict[str, str]:
        return dict(self._backends_down)
