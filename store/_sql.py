"""Small dialect helpers shared by the repositories."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

IdFactory = Callable[[], str]


def new_id() -> str:
    """The default id generator: a random UUID as 32 hex digits."""
    return uuid.uuid4().hex


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def upsert_insert(session: AsyncSession, entity: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` on the session's database.

    Both dialects spell it the same way, so a duplicate becomes "no row returned" instead of
    an IntegrityError, which on PostgreSQL would abort the whole unit of work.
    """
    if dialect_name(session) == "postgresql":
        return postgresql.insert(entity)
    return sqlite.insert(entity)


def table_of(entity: Any) -> Table:
    """A mapped class's table, for Core statements on hot paths (see ``RequestRepository.create``)."""
    table = entity.__table__
    assert isinstance(table, Table)
    return table


def rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count


def utc(at: datetime) -> datetime:
    """``at`` as the store hands it back (aware, UTC)."""
    return at.astimezone(UTC)
