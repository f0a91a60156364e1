"""Background tasks that come back: a loop that crashes (a database blip, a bug) is logged and restarted.

Every long-running task of the service (the outbox worker, the audit sequencer, the deadline
watcher) runs under one :class:`Supervisor`: a crash is logged with its traceback and the task is
started again after a jittered backoff (0.5 s doubling to 30 s, give or take 20 %, reset once it has
run for a minute), so a PostgreSQL restart costs seconds of delay instead of a worker that never
posts again.
``/readyz`` reads :meth:`Supervisor.status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

JITTER = 0.2  # each restart waits its backoff give or take this share

Loop = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class _Supervised:
    restarts: int = 0
    up: bool = True
    task: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, *, first_backoff: float = 0.5, max_backoff: float = 30.0, steady_after: float = 60.0) -> None:
        self.stop = asyncio.Event()
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.steady_after = steady_after
        self._tasks: dict[str, _Supervised] = {}

    def start(self, name: str, loop: Loop) -> None:
        """Run ``loop(stop)`` until :meth:`close`; restart it whenever it raises or returns early."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        entry = _Supervised()
        entry.task = asyncio.create_task(self._keep(name, loop, entry), name=name)
        self._tasks[name] = entry

    def status(self) -> dict[str, str]:
        """Each task's state for readiness: ``ok``, or why not."""
        out = {}
        for name, entry in self._tasks.items():
            if entry.task is None or entry.task.done():
                out[name] = "stopped"
            elif not entry.up:
                out[name] = f"restarting (crashed {entry.restarts} times)"
            else:
                out[name] = "ok"
        return out

    def restarts(self, name: str) -> int:
        return self._tasks[name].restarts

    def snapshot(self) -> list[tuple[str, int, bool]]:
        """Each task's (name, restarts, running now), for ``/metrics``."""
        return [
            (name, e.restarts, e.up and e.task is not None and not e.task.done()) for name, e in self._tasks.items()
        ]

    async def close(self, timeout: float = 5.0) -> None:
        """Ask every task to stop, wait up to ``timeout`` seconds, then cancel what is left."""
        self.stop.set()
        tasks = [e.task for e in self._tasks.values() if e.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self, name: str, loop: Loop, entry: _Supervised) -> None:
        backoff = self.first_backoff
        clock = asyncio.get_running_loop()
        while not self.stop.is_set():
            started = clock.time()
            entry.up = True
            try:
                await loop(self.stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s crashed; restarting in %.1f s", name, backoff)
            else:
                if self.stop.is_set():
                    return
                log.error("background task %s returned before shutdown; restarting in %.1f s", name, backoff)
            entry.up = False
            entry.restarts += 1
            if clock.time() - started >= self.steady_after:
                backoff = self.first_backoff
            # Jittered: replicas whose tasks crashed on one database failover do not all come back at once.
            delay = backoff * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (spreading, not secrecy)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            backoff = min(backoff * 2, self.max_backoff)
