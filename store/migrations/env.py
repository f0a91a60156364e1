"""Alembic environment: always handed a live connection by :func:`store.migrate.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from store.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables, a no-op on PostgreSQL.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("run migrations with `countersign db upgrade` (store.migrate.upgrade), not the alembic CLI")
run_migrations(_connection)
