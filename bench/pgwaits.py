"""What PostgreSQL's backends for one database were doing, sampled: where a multi-process run waits.

``pg_stat_activity`` is read every ``every`` seconds on a connection of its own; each backend of the
database counts once per sample in its state: running a statement, waiting on a lock (with the
statement that waits), on I/O (a commit's WAL flush), or idle in a transaction (waiting for its
client: the Python side). The summary is the average number of backends in each, most first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from types import TracebackType

import asyncpg
from sqlalchemy.engine import make_url

QUERY = """
SELECT pid, backend_start, state, wait_event_type, wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 48)
FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
"""


class PgWaits:
    def __init__(self, url: str, every: float = 0.02) -> None:
        parsed = make_url(url)
        self.database = parsed.database or ""
        self.dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.every = every
        self.counts: Counter[str] = Counter()
        self.samples = 0
        # Every backend (connection) seen: many more than a pool's size means connections are opened and
        # closed as the load comes and goes (a lower bound: one that lived less than a sample is missed).
        self.backends: set[tuple[int, object]] = set()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PgWaits:
        conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._run(conn))
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, conn: asyncpg.Connection) -> None:
        try:
            while True:
                for pid, started, state, kind, event, query in await conn.fetch(QUERY, self.database):
                    self.backends.add((pid, started))
                    if state != "idle":
                        self.counts[_label(state, kind, event, query)] += 1
                self.samples += 1
                await asyncio.sleep(self.every)
        finally:
            await conn.close()

    def summary(self, top: int = 5) -> str:
        """``lock (UPDATE audit_head ...) 6.1, running 2.3, ...``: average backends in each state."""
        if not self.samples:
            return ""
        parts = [f"{label} {n / self.samples:.1f}" for label, n in self.counts.most_common(top)]
        return "; ".join(parts) + f" ({len(self.backends)} connections seen)"


def _label(state: str | None, kind: str | None, event: str | None, query: str | None) -> str:
    if state == "idle in transaction":
        return "idle in transaction"
    if kind == "Lock":
        return f"lock wait ({event}) in: {query}"
    if kind in (None, "CPU"):
        return "running"
    if kind == "Client":
        return f"waiting for the client ({event})"
    return f"{kind}: {event}"
