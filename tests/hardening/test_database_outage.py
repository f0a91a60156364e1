"""The database gone for ten seconds under load: PostgreSQL cut off at the network (every connection
dropped, new ones refused, as in a restart or a failover), SQLite held locked by another process.

Agents keep sending review requests throughout. What the service accepted (202) before, during or
after the outage all gets its card, once; it serves again within seconds of the database coming back,
without a restart; the outbox worker and every other background task are up.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy.engine import make_url

from tests.dbsupport import BACKENDS, database_url
from tests.e2e.conftest import Stack, eventually
from tests.hardening.conftest import SWARM, outbox_states
from tests.hardening.tcpproxy import CuttableProxy, cuttable

OUTAGE = 10.0  # seconds
RECOVERED_WITHIN = 10.0  # seconds after the database is back, for the first request to be accepted again


class Fault(Protocol):
    async def sever(self) -> None: ...
    async def mend(self) -> None: ...


class SqliteLock:
    """Another process's write transaction holding the database: every write of ours waits, then fails."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    async def sever(self) -> None:
        # In a thread: waiting for the lock here must not stop this process's event loop, where the
        # service runs and finishes the write that holds it.
        await asyncio.to_thread(self._lock)

    async def mend(self) -> None:
        await asyncio.to_thread(self._unlock)

    def _lock(self) -> None:
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        self._conn.execute("BEGIN EXCLUSIVE")

    def _unlock(self) -> None:
        assert self._conn is not None
        self._conn.execute("ROLLBACK")
        self._conn.close()


class Cut:
    """PostgreSQL behind the proxy: every connection dropped, new ones refused, until mended."""

    def __init__(self, proxy: CuttableProxy) -> None:
        self.proxy = proxy

    async def sever(self) -> None:
        self.proxy.sever()

    async def mend(self) -> None:
        self.proxy.mend()


@dataclass
class Faulty:
    url: str
    fault: Fault


@pytest.fixture(params=BACKENDS)
async def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Faulty]:
    async with database_url(request.param, tmp_path) as url:
        if request.param == "sqlite":
            yield Faulty(url, SqliteLock(str(make_url(url).database)))
            return
        parsed = make_url(url)
        proxy: CuttableProxy
        async with cuttable(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            yield Faulty(
                parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), Cut(proxy)
            )


@pytest.fixture
def db_url(faulty: Faulty) -> str:
    """The e2e stack's database, reached through the fault (overrides the shared fixture)."""
    return faulty.url


async def test_ten_seconds_without_the_database_under_load_loses_nothing_accepted(stack: Stack, faulty: Faulty) -> None:
    agent = stack.agent("swarm")
    accepted: dict[str, float] = {}  # request id -> when it was accepted (monotonic)
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, body = await asyncio.wait_for(agent.ask("one_vote", {"n": n}), 30)
            except (TimeoutError, OSError):
                status, body = 0, None
            if status == 202:
                accepted[body["id"]] = time.monotonic()
            await asyncio.sleep(0.1)

    loading = asyncio.create_task(load())
    await eventually(lambda: _at_least(len(accepted), 5), what="requests before the outage")
    await faulty.fault.sever()
    await asyncio.sleep(OUTAGE)
    await faulty.fault.mend()
    mended = time.monotonic()
    await eventually(
        lambda: _at_least(sum(t > mended for t in accepted.values()), 5),
        what="requests accepted after the outage",
        timeout=RECOVERED_WITHIN + 20,
    )
    stop.set()
    await loading
    first_after = min(t for t in accepted.values() if t > mended)
    assert first_after - mended < RECOVERED_WITHIN, f"serving again {first_after - mended:.1f} s after the outage"
    # The fault happened: nothing was accepted for most of it (PostgreSQL refuses at once; SQLite's writes
    # wait out the lock, each up to the busy timeout, then fail or go through).
    times = sorted(accepted.values())
    assert max(b - a for a, b in itertools.pairwise(times)) > OUTAGE * 0.7

    # Every accepted request has its card, exactly once, and the outbox is empty.
    def cards() -> dict[str, int] | None:
        texts = [repr(m.blocks) for m in stack.slack.messages(SWARM)]
        counts = {rid: sum(rid in t for t in texts) for rid in accepted}
        return counts if all(counts.values()) else None

    counts = await stack.slack.wait_until(cards, what="a card for every accepted request", timeout=30)
    assert set(counts.values()) == {1}, {rid: n for rid, n in counts.items() if n != 1}
    await eventually(lambda: _drained(stack), what="an empty outbox", timeout=30)
    async with stack.http.get(stack.url + "/readyz") as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["outbox_worker"] == "ok"


async def _at_least(value: int, n: int) -> bool | None:
    return value >= n or None


async def _drained(stack: Stack) -> bool | None:
    return await outbox_states(stack, "swarm") == {"pending": 0, "leased": 0, "failed": 0} or None
