"""Store fixtures: every test using ``db_url`` runs on SQLite, and on PostgreSQL when configured."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store import create_engine, make_sessionmaker, uow, upgrade
from tests.dbsupport import BACKENDS, database_url, database_url_sync

T0 = datetime(2025, 1, 31, 9, 30, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def sync_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url_sync(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


class Clock:
    """A hand-driven clock: tests move time, the code under test never reads the real one."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"id{next(counter):06d}"


@pytest.fixture
async def tenant(sm: async_sessionmaker[AsyncSession]) -> str:
    async with uow(sm) as tx:
        await tx.tenants.ensure("acme", now=T0)
        await tx.tenants.ensure("globex", now=T0)
    return "acme"
