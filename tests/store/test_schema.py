"""Migrations build exactly the models' schema, on every backend; SQLite is configured for concurrency."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from store import create_engine, current_revision, head_revision, upgrade
from store.models import Base


async def test_migrations_match_the_models(engine):
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
        )
    assert diff == []


async def test_upgrade_is_idempotent_and_records_the_head(engine, db_url):
    await upgrade(db_url)
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()


async def test_concurrent_upgrades_of_a_fresh_database(db_url):
    await asyncio.gather(*(upgrade(db_url) for _ in range(3)))
    engine = create_engine(db_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_sqlite_pragmas(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    finally:
        await engine.dispose()
