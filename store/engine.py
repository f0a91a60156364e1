"""Engine and session factories. Nothing here runs at import time: callers own the engine.

SQLite is the embedded default and gets the settings that make it safe under concurrency:
WAL (readers never block the writer), foreign keys on, a busy timeout, and write
transactions that start with ``BEGIN IMMEDIATE``. Without the last one, SQLAlchemy's
deferred transactions take the write lock only at the first write, so two read-then-write
transactions deadlock and one gets "database is locked" regardless of the busy timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

# Execution option read by the ``begin`` listener: long read-only work (audit verify,
# export) asks for a deferred transaction so it does not hold the write lock.
SQLITE_BEGIN = "countersign_sqlite_begin"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str, *, echo: bool = False, pool_size: int | None = None, **kwargs: Any) -> AsyncEngine:
    """Create an async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    Args:
        url: SQLAlchemy database URL with an async driver.
        echo: log every statement (debugging only).
        pool_size: connections kept open, and up to half as many again at peaks (default: SQLAlchemy's
            5 and 10). An in-memory SQLite database has one connection whatever this says.
        **kwargs: passed on to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Returns:
        The engine; the caller disposes of it (``await engine.dispose()``).
    """
    if pool_size is not None and make_url(url).database not in (None, "", ":memory:"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size // 2)
    engine = create_async_engine(url, echo=echo, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory whose objects stay readable after commit (``expire_on_commit=False``)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def write_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The queue writers of a SQLite engine wait in (None for PostgreSQL).

    SQLite has one writer at a time. Without a queue, the waiting writers sleep in SQLite's
    busy handler (1 to 100 ms at a time) and wake in no order; waiting on an asyncio lock in
    this process instead hands the database over the moment it is free. Other processes still
    meet ``busy_timeout``.
    """
    lock: asyncio.Lock | None = getattr(engine.sync_engine, _WRITE_LOCK, None)
    return lock


_WRITE_LOCK = "_countersign_write_lock"


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    setattr(sync_engine, _WRITE_LOCK, asyncio.Lock())

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver must not issue its own BEGIN: we emit it in ``_on_begin`` (the
        # SQLAlchemy recipe for pysqlite/aiosqlite transaction control).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _enable_wal(cursor)
        # NORMAL is durable under WAL except for the last transactions on power loss,
        # and several times faster than FULL for many small commits.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN DEFERRED" if mode == "DEFERRED" else "BEGIN IMMEDIATE")


def _enable_wal(cursor: Any) -> None:
    # WAL is a property of the file, set once. Switching needs an exclusive lock and does
    # not wait on busy_timeout, so on a brand-new file racing connections may see "locked":
    # retry briefly; if still locked, the connection holding the lock is the one switching.
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() in {"wal", "memory"}:
        return
    for _ in range(20):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.fetchone()
            return
        except Exception as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
