"""Database fixtures' logic, shared by the store tests and (later) the end-to-end tests.

SQLite always; PostgreSQL when ``COUNTERSIGN_TEST_POSTGRES_URL`` is set. Each PostgreSQL test
gets a database of its own (``CREATE DATABASE cs_test_<unix time>_<random>``), dropped after
the test; databases left by a crashed run are dropped once they are an hour old. If the
variable is set but the server cannot be reached, the fixture raises: the tests fail, they
never skip.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENV = "COUNTERSIGN_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = f"set {POSTGRES_ENV}=postgresql+asyncpg://postgres@127.0.0.1:5432/test to run against PostgreSQL"
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
_STALE_AFTER_S = 3600
_NAME = re.compile(r"cs_test_(\d+)_[0-9a-f]+")


def postgres_url() -> str | None:
    """The PostgreSQL server URL for tests, or None when it is not configured."""
    return os.environ.get(POSTGRES_ENV, "").strip() or None


def sqlite_url(directory: Path) -> str:
    """A fresh SQLite database file in ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'countersign-test.db'}"


async def create_postgres_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL (drops stale test databases)."""
    name = f"cs_test_{int(time.time())}_{secrets.token_hex(4)}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            rows = await conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'cs_test_%'"))
            for (existing,) in rows.all():
                match = _NAME.fullmatch(existing)
                if match and int(match.group(1)) < time.time() - _STALE_AFTER_S:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{existing}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(server_url: str, url: str) -> None:
    """Drop a database made by :func:`create_postgres_database`, even with open connections."""
    name = make_url(url).database
    assert name and _NAME.fullmatch(name), name
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _postgres_server() -> str:
    """The configured server; skips the test when there is none."""
    server = postgres_url()
    if server is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    return server


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of ``backend`` (``sqlite`` or ``postgres``) for one test."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
        return
    server = _postgres_server()
    url = await create_postgres_database(server)
    try:
        yield url
    finally:
        await drop_postgres_database(server, url)


@contextmanager
def database_url_sync(backend: str, tmp_path: Path) -> Iterator[str]:
    """:func:`database_url` for synchronous tests (CLI tests, which run their own event loop)."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
        return
    server = _postgres_server()
    url = asyncio.run(create_postgres_database(server))
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(server, url))
