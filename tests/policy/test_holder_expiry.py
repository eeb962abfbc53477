"""The day's recompile (attestations and exceptions expire at midnight) never undoes a reload."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

import pytest

from gateway.policy import holder as holder_module
from gateway.policy.compile import CompiledPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.model import PolicySet
from tests.harness import EXAMPLE_POLICIES


def test_a_reload_during_the_expiry_recompile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(EXAMPLE_POLICIES, tmp_path / "policies")
    today = [dt.date(2026, 11, 23)]
    holder = PolicyHolder(tmp_path / "policies", lambda: today[0])
    before = holder.current.policy
    reloader: list[threading.Thread] = []

    def slow_compile(policy: PolicySet, day: dt.date) -> CompiledPolicy:
        if policy is before and not reloader:  # the expiry recompile of the old policy
            thread = threading.Thread(target=lambda: holder.install(holder.load()))
            reloader.append(thread)
            thread.start()
            thread.join(0.5)  # a reload that is not held back completes meanwhile
        return CompiledPolicy(policy, day)

    monkeypatch.setattr(holder_module, "CompiledPolicy", slow_compile)
    expiry = holder.current.valid_until
    assert expiry is not None
    today[0] = expiry  # an attestation has expired: the compiled policy is out of date
    holder.current  # noqa: B018
    reloader[0].join(10)
    assert holder.current.policy is not before, "the expiry recompile undid the reload"
