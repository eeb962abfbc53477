"""The boundary between the request path and where counters live: two methods and a lifecycle."""

from __future__ import annotations

from typing import Protocol

from gateway.limits.checks import Check, Verdict


class LimitStoreError(Exception):
    """The store could not answer (unreachable, timed out, refused): translated at the boundary."""


class LimitStore(Protocol):
    async def admit(self, checks: list[Check], holder: str) -> Verdict:
        """Apply every check at once: all counters move, or none does. `holder` names the
        request's concurrency slot. Raises `LimitStoreError` when it cannot answer."""
        ...

    def settle(self, checks: list[Check], holder: str, used_tokens: int) -> None:
        """The request ended: give back its slot and replace its token estimate by `used_tokens`.
        Never blocks and never raises (a store that cannot be reached frees the slot when its
        lease ends)."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
