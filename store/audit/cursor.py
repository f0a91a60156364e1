"""How far an audit sink has acknowledged each tenant's sealed chain (``audit_sink_cursor``).

The stream (``bot.service.auditstream``) reads what lies past a chain's cursor, hands it to the
sink, and moves the cursor only once the sink acknowledged it: at least once, in chain order. The
cursor only moves forward (a conditional upsert), so a streamer that lost its leadership without
noticing cannot move it back. Only sealed events are ever read: an unsealed one has no seq yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store._sql import rowcount, table_of
from store.audit.chain import AuditRecord
from store.audit.export import export
from store.engine import SQLITE_BEGIN, write_lock
from store.models import AuditHead
from store.models.audit import AuditSinkCursor

_CURSORS = table_of(AuditSinkCursor)


@dataclass(frozen=True)
class Backlog:
    """One chain as a sink sees it: the last seq it acknowledged (0: none) and the last sealed seq."""

    tenant: str
    acked: int
    head: int

    @property
    def lag(self) -> int:
        """Sealed events the sink has not acknowledged yet."""
        return self.head - self.acked


async def backlogs(engine: AsyncEngine, sink: str) -> list[Backlog]:
    """Every chain with sealed events, the system chain included, and where ``sink`` is in it (one query)."""
    query = (
        select(AuditHead.tenant, func.coalesce(AuditSinkCursor.seq, 0), AuditHead.seq)
        .outerjoin(AuditSinkCursor, and_(AuditSinkCursor.tenant == AuditHead.tenant, AuditSinkCursor.sink == sink))
        .order_by(AuditHead.tenant)
    )
    async with _reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [Backlog(str(tenant), int(acked), int(head)) for tenant, acked, head in rows]


async def sealed_after(engine: AsyncEngine, tenant: str, seq: int, *, limit: int) -> list[AuditRecord]:
    """The tenant's sealed events after ``seq``, at most ``limit``, in chain order."""
    return [event async for event in export(engine, tenant, since_seq=seq + 1, batch=limit, limit=limit)]


async def acknowledge(engine: AsyncEngine, sink: str, tenant: str, seq: int, *, now: datetime) -> bool:
    """Move ``sink``'s cursor of ``tenant`` forward to ``seq``.

    Returns:
        False when the cursor was already at or past ``seq`` (another streamer got there first).
    """
    values = {"sink": sink, "tenant": tenant, "seq": seq, "acked_at": now}
    async with contextlib.AsyncExitStack() as stack:
        lock = write_lock(engine)
        if lock is not None:
            await stack.enter_async_context(lock)
        conn = await stack.enter_async_context(engine.begin())
        upsert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_CURSORS).values(values)
        forward = upsert.on_conflict_do_update(
            index_elements=["sink", "tenant"],
            set_={"seq": upsert.excluded.seq, "acked_at": upsert.excluded.acked_at},
            where=_CURSORS.c.seq < upsert.excluded.seq,
        )
        return rowcount(await conn.execute(forward)) == 1


@contextlib.asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for one read: no BEGIN/COMMIT round trips on PostgreSQL, no write lock on SQLite."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        else:
            await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            async with conn.begin():
                yield conn
