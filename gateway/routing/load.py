"""Load per deployment as the router sees it: requests outstanding from this gateway, the queue
and KV-cache figures last read from a vLLM backend's `/metrics`, and a latency average."""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_WEIGHT = 0.2  # exponentially weighted moving average of time to first byte


@dataclass(frozen=True)
class VLLMLoad:
    running: float
    waiting: float
    kv_cache_usage: float  # 0..1


class LoadTracker:
    def __init__(self) -> None:
        self._outstanding: dict[str, int] = {}
        self._latency: dict[str, float] = {}
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

    def set_vllm(self, backend: str, load: VLLMLoad | None) -> None:
        if load is None:
            self._vllm.pop(backend, None)
        else:
            self._vllm[backend] = load

    def vllm(self, backend: str) -> VLLMLoad | None:
        return self._vllm.get(backend)

    def vllm_snapshot(self) -> dict[str, VLLMLoad]:
        return dict(self._vllm)
