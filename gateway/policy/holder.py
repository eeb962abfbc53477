"""The policy in force: loaded from a directory, compiled, swapped whole or not at all.

A request reads `current` once and keeps that compiled policy to its end, so a reload never changes
the rules under a request in flight (the proxy still stops retrying on deployments a reload took
away). What triggers a reload, and the API keys reloaded with the policy, are `gateway/reload.py`'s:
it loads a new revision here (`load`) and puts it in force (`install`) only if everything it
reloads validates.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.policy.compile import CompiledPolicy
from gateway.policy.load import load_policy_dir, policy_files


class PolicyHolder:
    def __init__(self, directory: Path, today: Callable[[], dt.date]) -> None:
        self.directory = directory
        self._today = today
        self._lock = threading.Lock()
        self._compiled = CompiledPolicy(load_policy_dir(directory), today())
        self.loaded_at = dt.datetime.now(dt.UTC)  # when the revision in force was loaded
        self.previous: CompiledPolicy | None = None  # the revision before it, for the console

    @property
    def current(self) -> CompiledPolicy:
        compiled = self._compiled
        today = self._today()
        if compiled.is_current(today):
            return compiled
        # the day changed (attestations, exceptions may have expired): recompile under the lock,
        # from the policy in force then, so that a reload installed meanwhile is never undone
        with self._lock:
            compiled = self._compiled
            if not compiled.is_current(today):
                compiled = self._compiled = CompiledPolicy(compiled.policy, today)
        return compiled

    def files(self) -> list[Path]:
        """The files the policy is made of (those that exist)."""
        return policy_files(self.directory)

    def load(self) -> CompiledPolicy:
        """The directory loaded again and compiled for today, not yet in force; raises
        `PolicyLoadError` naming file, line and field."""
        return CompiledPolicy(load_policy_dir(self.directory), self._today())

    def install(self, compiled: CompiledPolicy) -> None:
        """Put `compiled` in force; the revision it replaces becomes `previous`."""
        with self._lock:
            if compiled.revision != self._compiled.revision:
                self.previous, self.loaded_at = self._compiled, dt.datetime.now(dt.UTC)
            self._compiled = compiled
