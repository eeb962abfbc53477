"""Which deployments are healthy: active probes per backend, passive outlier ejection per
deployment, and per tenant of a deployment.

Passive. Every attempt's outcome counts: connect errors, timeouts, 5xx answers and streams that
break after their first byte are failures; a stream counts as a success only once it has ended
cleanly. Failures are attributed to the (deployment, tenant) pair, so one tenant's requests cannot
take a deployment away from the others:

- `consecutive_failures` failures in a row of one tenant's requests eject the deployment *for
  that tenant*;
- the deployment is ejected *for every tenant* when that many failures in a row come from at
  least `tenants_for_all` tenants, or are connect errors (no request can cause those).

An ejection lasts `base * 2^(n-1)` seconds (n: ejections since the last success, capped at
`max`). Failures of attempts that began before an ejection (requests in flight when it happened)
do not count again, so a burst of concurrent failures ejects once, not five times over. When the
time is up the deployment is back on trial: its next failure ejects it again with a doubled time,
its next success resets its history. A successful probe re-admits at once a deployment ejected
for connection failures (or any deployment of a backend whose probe had failed): a healed backend
comes back within one probe interval, not at the end of a doubled timer.

Active: a probe loop marks a backend down while its probe fails (see `monitor.py`). Health only
ever narrows the eligible set: with nothing healthy left the answer is 503 `no_healthy_backend`,
never a deployment outside policy.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.policy.schema import Deployment

log = logging.getLogger("gateway.routing")

EVERYONE = ""  # the tenant key of a deployment's ejection for every tenant
CONNECT_FAILURES = frozenset({"upstream_connect_error"})  # no request content causes these
CONNECTION_FAILURES = CONNECT_FAILURES | {"upstream_error"}  # a probe can see these heal


@dataclass
class _Streak:
    count: int = 0
    tenants: set[str] = field(default_factory=set)
    ejections: int = 0
    ejected_at: float = -math.inf
    ejected_until: float = 0.0
    ejected_after: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Ejection:
    deployment: str
    seconds: float
    reason: str
    tenant: str | None = None  # None: ejected for every tenant


class HealthTracker:
    def __init__(
        self,
        *,
        consecutive_failures: int = 5,
        base_ejection_s: float = 5.0,
        max_ejection_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_ejection: Callable[[Ejection], None] | None = None,
        tenants_for_all: int = 2,
    ) -> None:
        self._threshold = consecutive_failures
        self._base = base_ejection_s
        self._max = max_ejection_s
        self._clock = clock
        self._on_ejection = on_ejection
        self._tenants_for_all = tenants_for_all
        self._streaks: dict[tuple[str, str], _Streak] = {}
        self._backend_of: dict[str, str] = {}
        self._backends_down: dict[str, str] = {}

    def now(self) -> float:
        return self._clock()

    # ---- passive ---------------------------------------------------------------------------

    def success(self, dep: Deployment, tenant: str = EVERYONE) -> None:
        now = self._clock()
        for key in {(dep.id, tenant), (dep.id, EVERYONE)}:
            streak = self._streaks.get(key)
            if streak is not None and streak.ejected_until <= now:
                del self._streaks[key]

    def failure(
        self, dep: Deployment, reason: str, tenant: str = EVERYONE, since: float | None = None
    ) -> None:
        """Count a failed attempt of `tenant` on `dep` that began at `since` (clock time)."""
        now = self._clock()
        began = now if since is None else since
        self._backend_of[dep.id] = dep.backend
        connect = reason in CONNECT_FAILURES or tenant == EVERYONE  # not attributable
        keys = [(dep.id, EVERYONE)] if connect else [(dep.id, tenant), (dep.id, EVERYONE)]
        for key in dict.fromkeys(keys):
            streak = self._streaks.setdefault(key, _Streak())
            if began < streak.ejected_at or now < streak.ejected_until:
                continue  # in flight when it was ejected: that ejection has counted it
            streak.count += 1
            streak.tenants.add(tenant)
            streak.reason = reason
            if self._ejects(key[1] == EVERYONE, connect, streak):
                self._eject(key, streak, now)

    def _ejects(self, everyone: bool, connect: bool, streak: _Streak) -> bool:
        on_trial = streak.ejections > 0
        if everyone and not connect:
            return streak.count >= self._threshold and len(streak.tenants) >= self._tenants_for_all
        return streak.count >= self._threshold or on_trial

    def _eject(self, key: tuple[str, str], streak: _Streak, now: float) -> None:
        streak.ejections += 1
        seconds = min(self._base * 2 ** (streak.ejections - 1), self._max)
        streak.ejected_at = now
        streak.ejected_until = now + seconds
        streak.ejected_after = streak.count
        streak.count = 0
        streak.tenants.clear()
        deployment, tenant = key
        log.warning(
            "deployment ejected",
            extra={
                "deployment": deployment,
                "tenant": tenant or None,
                "seconds": seconds,
                "reason": streak.reason,
            },
        )
        if self._on_ejection is not None:
            self._on_ejection(Ejection(deployment, seconds, streak.reason, tenant or None))

    # ---- active ----------------------------------------------------------------------------

    def backend_probed(
        self, backend: str, problem: str | None, started: float = -math.inf
    ) -> list[str]:
        """The probe of `backend` that began at `started` found `problem` (None: it passed).
        Returns the deployments this re-admits."""
        readmitted: list[str] = []
        if problem is not None:
            if backend not in self._backends_down:
                log.warning("backend probe failed", extra={"backend": backend, "reason": problem})
            self._backends_down[backend] = problem
            return readmitted
        was_down = self._backends_down.pop(backend, None) is not None
        if was_down:
            log.warning("backend probe passed again", extra={"backend": backend})
        now = self._clock()
        for (deployment, _), streak in self._streaks.items():
            if self._backend_of.get(deployment) != backend or streak.ejected_until <= now:
                continue
            if was_down or (streak.reason in CONNECTION_FAILURES and streak.ejected_at < started):
                streak.ejected_until = now  # back on trial
                readmitted.append(deployment)
        if was_down:
            readmitted.extend(d for d, b in self._backend_of.items() if b == backend)
        return sorted(set(readmitted))

    # ---- reading ---------------------------------------------------------------------------

    def problem(self, dep: Deployment, tenant: str = EVERYONE) -> str | None:
        """Why `dep` may not be used now for `tenant`, or None when it may."""
        down = self._backends_down.get(dep.backend)
        if down is not None:
            return f"health probe of {dep.backend} failed: {down}"
        now = self._clock()
        for key in ((dep.id, EVERYONE), (dep.id, tenant)):
            streak = self._streaks.get(key)
            if streak is None or streak.ejected_until <= now:
                continue
            who = "" if key[1] == EVERYONE else f" for tenant {key[1]}"
            after = (
                f"{streak.ejected_after} failures in a row"
                if streak.ejected_after > 1
                else "a failure on trial"
            )
            return (
                f"ejected{who} for {streak.ejected_until - now:.0f} more s after {after}"
                f" ({streak.reason})"
            )
        return None

    def healthy(self, dep: Deployment) -> bool:
        """Usable by every tenant: not down by probe, not ejected for everyone."""
        return self.problem(dep) is None

    def snapshot(self, deployments: list[Deployment]) -> dict[str, bool]:
        return {d.id: self.healthy(d) for d in deployments}

    def backends_down(self) -> dict[str, str]:
        return dict(self._backends_down)
