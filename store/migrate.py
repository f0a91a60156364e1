"""Schema migrations: Alembic, run programmatically at start and by ``countersign db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine
from store.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant: the advisory lock that lets only one replica migrate at a time.
_PG_MIGRATION_LOCK = 0x636F756E74657273


def alembic_config() -> Config:
    """The Alembic configuration pointing at the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


async def upgrade(target: str | AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; idempotent, safe for several replicas at once.

    Args:
        target: a database URL, or an engine made by :func:`store.engine.create_engine`.
        revision: Alembic revision to upgrade to (default: the newest).

    Raises:
        MigrationError: when a migration fails; the transaction is rolled back.
    """
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            await conn.run_sync(_upgrade, revision)
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(f"migration to {revision} failed: {exc}") from exc
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
