"""One loop of a kind across replicas: a PostgreSQL session advisory lock held by the loop that runs.

The audit sequencer and the audit stream each run in one process at a time. The running one
holds a session advisory lock (``pg_try_advisory_lock``) on a connection of its own, in
autocommit; the others try again every ``standby`` seconds and take over within about that long
once the holder's connection closes (a stopped or killed replica). The holder checks its
connection with :func:`leadership`'s liveness check and steps down when it is gone. On SQLite
there is no lock to take: the process is the only one (see store/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

Alive = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def leadership(
    engine: AsyncEngine, key: int, stop: asyncio.Event, *, standby: float, role: str
) -> AsyncIterator[Alive | None]:
    """Yields a liveness check once this process holds lock ``key``, or None if ``stop`` came first.

    The liveness check raises when the connection holding the lock (and so the lock) is gone.

    Args:
        engine: the database.
        key: the advisory lock; one constant per kind of loop.
        stop: set to give up waiting.
        standby: seconds between attempts to take the lock.
        role: what the holder does, for the log line (``"audit sequencer: this process seals..."``).
    """
    if engine.dialect.name != "postgresql":
        yield _nothing
        return
    async with engine.connect() as conn:
        # Autocommit: the lock is the session's, and an idle open transaction could be cut off.
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        lock = text("SELECT pg_try_advisory_lock(:key)")
        while not (await conn.execute(lock, {"key": key})).scalar_one():
            if await wait(stop, standby):
                yield None
                return
        log.info("%s", role)

        async def alive() -> None:
            await conn.execute(text("SELECT 1"))

        try:
            yield alive
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            except Exception:
                # The lock dies with the session: never hand it back to the pool still held.
                await conn.invalidate()


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds`` (none if not positive); True if ``stop`` was set meanwhile."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _nothing() -> None:
    return None
