"""A database that fails for a while, as when PostgreSQL restarts: every statement an engine runs raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine


class Outage:
    """Every statement the engine runs fails (as when PostgreSQL restarts) while ``down``; counts them."""

    def __init__(self) -> None:
        self.down = False
        self.refused: list[str] = []

    def outbox_refused(self) -> int:
        """How many of the refused statements read or wrote the outbox (the worker's)."""
        return sum("outbox" in statement for statement in self.refused)

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.down and not statement.lstrip().upper().startswith(("BEGIN", "ROLLBACK")):
            self.refused.append(statement)
            raise OperationalError(statement, None, ConnectionResetError("the database is restarting"))


@contextmanager
def outage(engine: AsyncEngine) -> Iterator[Outage]:
    failing = Outage()
    event.listen(engine.sync_engine, "before_cursor_execute", failing)
    try:
        yield failing
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", failing)
