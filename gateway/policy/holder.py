"""The policy in force: loaded from a directory, compiled, swapped whole or not at all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from gateway.policy.compile import CompiledPolicy
from gateway.policy.load import load_policy_dir


class PolicyHolder:
    def __init__(self, directory: Path, today: Callable[[], dt.date]) -> None:
        self.directory = directory
        self._today = today
        self._compiled = CompiledPolicy(load_policy_dir(directory), today())

    @property
    def current(self) -> CompiledPolicy:
        compiled = self._compiled
        today = self._today()
        if not compiled.is_current(today):
            compiled = self._compiled = CompiledPolicy(compiled.policy, today)
        return compiled

    def reload(self) -> CompiledPolicy:
        """Load and compile the directory; the policy in force changes only if both succeed."""
        compiled = CompiledPolicy(load_policy_dir(self.directory), self._today())
        self._compiled = compiled
        return compiled
