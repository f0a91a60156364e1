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
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import DEFAULT_DATABASE_URL, SANDBOX_DATA_DIR, SANDBOX_DATABASE, ConfigError, command_database_url
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
    """The URL from ``--database-url``, else the environment's, else ./countersign.db (or the sandbox's
    database when only it is here). Raises ConfigError for a value that is no database URL or path."""
    url = command_database_url(os.environ, args.database_url)
    chosen = args.database_url or "COUNTERSIGN_DATABASE_URL" in os.environ
    if url != DEFAULT_DATABASE_URL and not chosen:
        print(f"using the sandbox's database {make_url(url).database}", file=sys.stderr)
    elif not chosen and (SANDBOX_DATA_DIR / SANDBOX_DATABASE).exists():
        # Both are here: ./countersign.db wins, which is not the sandbox's (its keys answer 401 there).
        print(
            f"using ./countersign.db; the sandbox's database is {SANDBOX_DATA_DIR / SANDBOX_DATABASE}"
            f" (--database-url {SANDBOX_DATA_DIR / SANDBOX_DATABASE} to use it)",
            file=sys.stderr,
        )
    return url


def require_existing(url: str) -> None:
    """For commands that only read: a SQLite file that is not there is an error, not a new database."""
    parsed = make_url(url)
    on_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_file and not Path(str(parsed.database)).exists():
        raise ConfigError(
            f"no database at {parsed.database} (nothing has run here yet: start `countersign sandbox` or"
            " `countersign serve`, or name the database with --database-url)"
        )


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
