"""Reload the policy and the API keys together: when their files change, on SIGHUP, or through
the admin API.

A reload loads and compiles the policy directory and reads the keys file again, so an admin can
change a rule, or add, disable or remove a key, without a restart. The policy and the keys in
force change only if all of it validates; a reload that fails changes neither and is reported
with file, line and field.

File changes are found by polling names, sizes and modification times (`policy_watch_interval_s`),
which also sees Kubernetes ConfigMap updates (a symlink swap that inotify-based watchers miss).
Loading and compiling run in a worker thread so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.auth.keys import KeysFileError, KeyStore
from gateway.policy.compile import CompiledPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.load import PolicyLoadError
from gateway.problems import Problem
from gateway.tasks import cancel_and_wait

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


class Reloader:
    """Reloads `policy` and `keys` (the keys of its file, if it has one) as one."""

    def __init__(
        self,
        policy: PolicyHolder,
        keys: KeyStore | None = None,
        *,
        watch_interval_s: float = 0,
        on_reload: Callable[[ReloadResult], None] | None = None,
        seen: Fingerprint | None = None,
    ) -> None:
        """`seen` is the fingerprint of the files taken before `policy` and `keys` were loaded
        (a change meanwhile is then reloaded); by default it is taken now."""
        self._policy = policy
        self._keys = keys
        self._interval = watch_interval_s
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._fingerprint = seen if seen is not None else self.fingerprint()
        self.last_reload: ReloadResult | None = None
        self.reloads = {"ok": 0, "failed": 0}
        self._tasks: set[asyncio.Task[object]] = set()
        self._signal_installed = False

    def fingerprint(self) -> Fingerprint:
        return fingerprint(self._policy.files(), self._keys_path())

    def changed_on_disk(self) -> bool:
        return self.fingerprint() != self._fingerprint

    def reload_now(self, trigger: str) -> ReloadResult:
        """Load and compile the policy and read the keys file; the policy and the keys in force
        change only if all of it succeeds. Blocks: the event loop calls `reload`."""
        with self._lock:
            seen = self.fingerprint()
            previous = self._policy.current.revision
            problems: list[Problem] = []
            compiled: CompiledPolicy | None = None
            keys: KeyStore | None = None
            try:
                compiled = self._policy.load()
            except PolicyLoadError as exc:
                problems += exc.problems
            try:
                keys = self._read_keys()
            except KeysFileError as exc:
                problems += exc.problems
            if compiled is None or problems:
                result = ReloadResult(trigger, False, previous, previous, tuple(problems))
            else:
                self._policy.install(compiled)
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

    async def reload(self, trigger: str) -> ReloadResult:
        return await asyncio.to_thread(self.reload_now, trigger)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._interval > 0:
            self._spawn(self._watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._signal_installed = True

    async def stop(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        await cancel_and_wait(self._tasks)

    def _keys_path(self) -> tuple[Path, ...]:
        path = self._keys.path if self._keys is not None else None
        return (path,) if path is not None else ()

    def _read_keys(self) -> KeyStore | None:
        if self._keys is None or self._keys.path is None:
            return None
        return KeyStore.from_file(self._keys.path, self._policy.directory)

    def _on_sighup(self) -> None:
        self._spawn(self.reload("sighup"))

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await asyncio.to_thread(self.changed_on_disk):
                    await self.reload("file_change")
            except Exception:  # the watcher must outlive any one failure
                log.exception("policy watcher failed; it keeps watching")


def fingerprint(*groups: Iterable[Path]) -> Fingerprint:
    """Names, modification times and sizes of the files that exist: cheap to poll."""
    out: list[tuple[str, int, int]] = []
    for path in (p for group in groups for p in group):
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
