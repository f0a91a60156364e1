"""`countersign db upgrade`: apply the schema migrations (also done at service start).

Also home of the helpers the other store-backed commands share (database URL option, engine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import ConfigError, Settings
from store import StoreError, create_engine, current_revision, upgrade


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """The ``--database-url`` option every store-backed command takes."""
    parser.add_argument(
        "--database-url",
        "--url",
        dest="database_url",
        metavar="URL",
        help="database URL (default: $COUNTERSIGN_DATABASE_URL or sqlite+aiosqlite:///./countersign.db)",
    )


def database_url(args: argparse.Namespace) -> str:
    """The URL from ``--database-url``, else from the environment via ``Settings``."""
    if args.database_url:
        return str(args.database_url)
    return Settings.from_env(os.environ).database_url


def display_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@asynccontextmanager
async def migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database brought up to the current schema (so commands work on a fresh file)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("db", help="database schema (migrations)")
    commands = parser.add_subparsers(dest="db_command", metavar="COMMAND")
    commands.required = True
    up = commands.add_parser("upgrade", help="apply all migrations (idempotent)")
    add_database_url(up)
    up.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    try:
        url = database_url(args)
        revision = asyncio.run(_run_upgrade(url))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc), 1)
    print(f"database {display_url(url)} at revision {revision}")
    return 0


async def _run_upgrade(url: str) -> str | None:
    async with migrated_engine(url) as engine:
        return await current_revision(engine)
