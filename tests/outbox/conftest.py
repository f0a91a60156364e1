"""The outbox worker against a real database (SQLite, and PostgreSQL when configured), with deliveries
that record what they were handed and a frozen clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from bot.outbox.delivery import Delivery
from bot.outbox.loop import OutboxWorker
from bot.service.signals import Signals
from store import make_sessionmaker, uow
from store.models import OutboxItem
from store.outbox import RetryPolicy

# The same databases as the store tests (SQLite, and PostgreSQL when configured).
from tests.store.conftest import T0, db_url, engine  # noqa: F401

TENANT = "acme"
NOTE = "test.note"
FAST = RetryPolicy(base=timedelta(milliseconds=10), cap=timedelta(milliseconds=50), jitter_ratio=0)


@pytest.fixture
async def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:  # noqa: F811
    sessionmaker = make_sessionmaker(engine)
    async with uow(sessionmaker) as tx:
        await tx.tenants.ensure(TENANT, now=T0)
    return sessionmaker


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


class Recorder:
    """Delivers ``kinds`` by remembering the items; an item whose ``n`` is in ``hang`` blocks until released,
    and ``fail`` maps an ``n`` to the exception its deliveries raise."""

    def __init__(self, kinds: frozenset[str] = frozenset({NOTE})) -> None:
        self.kinds = kinds
        self.delivered: list[int] = []  # the payloads' ``n``, in delivery order
        self.hang: set[int] = set()
        self.fail: dict[int, Exception] = {}
        self.started: dict[int, asyncio.Event] = {}
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    def in_flight(self, n: int) -> asyncio.Event:
        return self.started.setdefault(n, asyncio.Event())

    async def deliver(self, item: OutboxItem) -> None:
        n = int(item.payload["n"])
        self.in_flight(n).set()
        if n in self.hang:
            await self.release.wait()
        if n in self.fail:
            raise self.fail[n]
        self.delivered.append(n)
        self.changed.set()


def worker(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock, *handlers: Delivery, **kwargs: Any
) -> OutboxWorker:
    kwargs.setdefault("signals", Signals())
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("database_retry", FAST)
    return OutboxWorker(sessionmaker=sm, handlers=handlers, clock=clock, **kwargs)


async def enqueue(sm: async_sessionmaker[AsyncSession], clock: FrozenClock, *ns: int, kind: str = NOTE) -> list[int]:
    """Queue one item per ``n``, all of one request (so one worker delivers them in order)."""
    async with uow(sm) as tx:
        ids = [await tx.outbox.enqueue(TENANT, kind, {"request_id": "r1", "n": n}, now=clock.now()) for n in ns]
    return [i for i in ids if i is not None]


async def states(sm: async_sessionmaker[AsyncSession], clock: FrozenClock) -> dict[int, tuple[str, int]]:
    """Every item's (state, attempts), by its payload's ``n``."""
    async with uow(sm, read_only=True) as tx:
        items = (await tx.session.scalars(select(OutboxItem))).all()
    now = clock.now()

    def state(item: OutboxItem) -> str:
        if item.done_at is not None:
            return "done"
        if item.failed_at is not None:
            return "failed"
        return "leased" if item.lease_until is not None and item.lease_until > now else "pending"

    return {int(i.payload["n"]): (state(i), i.attempts) for i in items}
