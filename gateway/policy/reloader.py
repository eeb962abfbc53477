"""What makes the gateway reload its policy: a change of the files, SIGHUP, or the admin API.

File changes are found by polling names, sizes and modification times (`policy_watch_interval_s`),
which also sees Kubernetes ConfigMap updates (a symlink swap that inotify-based watchers miss).
Loading and compiling run in a worker thread so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from gateway.policy.holder import PolicyHolder, ReloadResult
from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.policy")


class PolicyReloader:
    def __init__(self, holder: PolicyHolder, watch_interval_s: float) -> None:
        self._holder = holder
        self._interval = watch_interval_s
        self._tasks: set[asyncio.Task[object]] = set()
        self._signal_installed = False

    async def reload(self, trigger: str) -> ReloadResult:
        return await asyncio.to_thread(self._holder.reload, trigger)

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
                if await asyncio.to_thread(self._holder.changed_on_disk):
                    await self.reload("file_change")
            except Exception:  # the watcher must outlive any one failure
                log.exception("policy watcher failed; it keeps watching")
