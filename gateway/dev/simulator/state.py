"""What a simulated backend is told to do, and what it saw; changed through `/_sim/config`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimConfig:
    ttft_s: float = 0.0
    token_interval_s: float = 0.0
    output_tokens: int = 12
    max_model_len: int = 4096
    fail_status: int = 0
    fail_count: int = 0
    error_style: str = "nested"
    reset_after_chunks: int = 0
    hang: bool = False  # inference requests are accepted and never answered; /health answers
    close_connections: bool = False  # every connection is closed before any answer, /health too
    fail_user: str = ""  # requests whose `user` is this answer 500, as a poisoned input would
    waiting: int = 0
    kv_cache_usage: float = 0.0


@dataclass
class SimState:
    name: str
    models: list[str]
    config: SimConfig = field(default_factory=SimConfig)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    received: int = 0
    served: int = 0
    running: int = 0
    hits: dict[str, int] = field(default_factory=dict)  # requests per path, probes included

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self.config, key):
                raise KeyError(key)
            setattr(self.config, key, type(getattr(self.config, key))(value))
