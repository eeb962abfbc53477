"""The policy in force: loaded from a directory, compiled, swapped whole or not at all.

A request reads `current` once and keeps that compiled policy to its end, so a reload never changes
the rules under a request in flight (the proxy still stops retrying on deployments a reload took
away). A reload also reads the API keys file again, so an admin can add, disable or remove a key
without a restart. A reload that fails to load or compile the policy, or to read the keys file,
changes neither and is reported.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth.keys import KeyStore
from gateway.policy.compile import CompiledPolicy
from gateway.policy.load import PolicyLoadError, load_policy_dir, policy_files
from gateway.problems import InvalidFiles, Problem

log = logging.getLogger("gateway.policy")

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class ReloadResult:
    trigger: str
    ok: bool
    revision: str
    previous: str
    problems: tuple[Problem, ...] = ()
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def changed(self) -> bool:
        return self.ok and self.revision != self.previous

    def as_json(self) -> dict[str, object]:
        return {
            "trigger": self.trigger,
            "ok": self.ok,
            "changed": self.changed,
            "revision": self.revision,
            "previous_revision": self.previous,
            "at": self.at.isoformat(),
            "problems": [str(p) for p in self.problems],
        }


class PolicyHolder:
    def __init__(
        self,
        directory: Path,
        today: Callable[[], dt.date],
        on_reload: Callable[[ReloadResult], None] | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self.directory = directory
        self._today = today
        self._on_reload = on_reload
        self._keys = keys
        self._also = (keys.path,) if keys is not None and keys.path is not None else ()
        self._lock = threading.Lock()
        self._fingerprint = fingerprint(directory, self._also)
        self._compiled = CompiledPolicy(load_policy_dir(directory), today())
        self.loaded_at = dt.datetime.now(dt.UTC)  # when the revision in force was loaded
        self.previous: CompiledPolicy | None = None  # the revision before it, for the console
        self.last_reload: ReloadResult | None = None
        self.reloads = {"ok": 0, "failed": 0}

    @property
    def current(self) -> CompiledPolicy:
        compiled = self._compiled
        today = self._today()
        if compiled.is_current(today):
            return compiled
        # the day changed (attestations, exceptions may have expired): recompile under the reload
        # lock, from the policy in force then, so that a reload in progress is never undone
        with self._lock:
            compiled = self._compiled
            if not compiled.is_current(today):
                compiled = self._compiled = CompiledPolicy(compiled.policy, today)
        return compiled

    def changed_on_disk(self) -> bool:
        return fingerprint(self.directory, self._also) != self._fingerprint

    def reload(self, trigger: str) -> ReloadResult:
        """Load and compile the directory and read the keys file; the policy and the keys in
        force change only if all of it succeeds."""
        with self._lock:
            seen = fingerprint(self.directory, self._also)
            previous = self._compiled.revision
            problems: list[Problem] = []
            compiled: CompiledPolicy | None = None
            keys: KeyStore | None = None
            try:
                compiled = CompiledPolicy(load_policy_dir(self.directory), self._today())
            except PolicyLoadError as exc:
                problems += exc.problems
            try:
                keys = self._read_keys()
            except InvalidFiles as exc:
                problems += exc.problems
            if compiled is None or problems:
                result = ReloadResult(trigger, False, previous, previous, tuple(problems))
            else:
                if compiled.revision != previous:
                    self.previous, self.loaded_at = self._compiled, dt.datetime.now(dt.UTC)
                self._compiled = compiled
                if keys is not None and self._keys is not None:
                    self._keys.swap(keys)
                result = ReloadResult(
                    trigger, True, compiled.revision, previous, compiled.policy.warnings
                )
            self._fingerprint = seen
            self.last_reload = result
            self.reloads["ok" if result.ok else "failed"] += 1
        _log(result)
        if self._on_reload is not None:
            self._on_reload(result)
        return result

    def _read_keys(self) -> KeyStore | None:
        if self._keys is None or self._keys.path is None:
            return None
        return KeyStore.from_file(self._keys.path, self.directory)


def fingerprint(directory: Path, also: tuple[Path, ...] = ()) -> Fingerprint:
    """Names, modification times and sizes of the policy files (and of `also`): cheap to poll."""
    out: list[tuple[str, int, int]] = []
    for path in (*policy_files(directory), *also):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def _log(result: ReloadResult) -> None:
    if result.ok:
        log.info(
            "policy reloaded",
            extra={
                "event": "policy_reload",
                "trigger": result.trigger,
                "revision": result.revision,
                "previous_revision": result.previous,
                "changed": result.changed,
            },
        )
    else:
        log.error(
            "policy reload failed; the policy in force is kept",
            extra={
                "event": "policy_reload_failed",
                "trigger": result.trigger,
                "revision": result.revision,
                "problems": [str(p) for p in result.problems],
            },
        )
