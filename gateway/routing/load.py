"""Outstanding requests per deployment, as the router sees them."""

from __future__ import annotations


class LoadTracker:
    def __init__(self) -> None:
        self._outstanding: dict[str, int] = {}

    def outstanding(self, deployment_id: str) -> int:
        return self._outstanding.get(deployment_id, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._outstanding)

    def start(self, deployment_id: str) -> None:
        self._outstanding[deployment_id] = self._outstanding.get(deployment_id, 0) + 1

    def finish(self, deployment_id: str) -> None:
        self._outstanding[deployment_id] = max(0, self._outstanding.get(deployment_id, 0) - 1)
