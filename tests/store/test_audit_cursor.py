"""An audit sink's cursor: per sink and chain, only forward, and what is behind it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store import uow
from store.audit import Backlog, Sequencer, acknowledge, backlogs, sealed_after
from tests.store.conftest import T0, Clock

SINK = "https://siem.example/ingest"


async def _events(sm: async_sessionmaker[AsyncSession], engine: AsyncEngine, tenant: str, count: int) -> None:
    async with uow(sm) as tx:
        for n in range(count):
            await tx.audit.append(tenant, "test.event", now=T0, payload={"n": n})
    await Sequencer(engine, now=lambda: T0).seal_once()


async def test_the_cursor_only_moves_forward_per_sink_and_chain(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], tenant: str, clock: Clock
) -> None:
    await _events(sm, engine, "acme", 6)
    await _events(sm, engine, "globex", 2)
    assert await backlogs(engine, SINK) == [Backlog("acme", 0, 6), Backlog("globex", 0, 2)]

    assert await acknowledge(engine, SINK, "acme", 4, now=clock.now)
    assert not await acknowledge(engine, SINK, "acme", 3, now=clock.advance(seconds=1))  # a late streamer
    assert not await acknowledge(engine, SINK, "acme", 4, now=clock.now)
    assert await backlogs(engine, SINK) == [Backlog("acme", 4, 6), Backlog("globex", 0, 2)]
    # Another sink has its own cursor: it starts from the first event.
    assert await backlogs(engine, "file:///var/log/audit.jsonl") == [Backlog("acme", 0, 6), Backlog("globex", 0, 2)]

    after = await sealed_after(engine, "acme", 4, limit=10)
    assert [(e.tenant, e.seq) for e in after] == [("acme", 5), ("acme", 6)]
    assert [e.seq for e in await sealed_after(engine, "acme", 0, limit=3)] == [1, 2, 3]
