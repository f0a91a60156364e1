"""Streaming a tenant's sealed chain out (``countersign audit export``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from store.audit.chain import AuditRecord, record_of
from store.audit.log import SEALED_COLUMNS
from store.audit.verify import snapshot
from store.models import AuditEvent


async def export(
    engine: AsyncEngine,
    tenant: str,
    *,
    since_seq: int | None = None,
    since_at: datetime | None = None,
    batch: int = 2000,
    limit: int | None = None,
) -> AsyncIterator[AuditRecord]:
    """Stream the tenant's sealed events in chain order without loading them all.

    Unsealed events have no seq or hash yet: they are exported once sealed, so a later export
    with ``since_seq`` picks up exactly where this one ended.

    Args:
        engine: the database.
        tenant: whose chain; other tenants' events are never read.
        since_seq: only events with ``seq >= since_seq``.
        since_at: only events with ``at >= since_at``.
        batch: rows fetched per round trip.
        limit: at most this many events.

    Yields:
        Each event, oldest first.
    """
    query = select(*SEALED_COLUMNS).where(AuditEvent.tenant == tenant)
    if since_seq is not None:
        query = query.where(AuditEvent.seq >= since_seq)
    if since_at is not None:
        query = query.where(AuditEvent.at >= since_at)
    if limit is not None:
        query = query.limit(limit)
    async with snapshot(engine) as conn:
        stream = await conn.stream(query.order_by(AuditEvent.seq).execution_options(yield_per=batch))
        async for row in stream:
            yield record_of(row)


def json_line(event: AuditRecord) -> str:
    """One event as a line of JSON (no newline): the shape ``audit export`` and the audit sink write."""
    return json.dumps(event.as_dict(), ensure_ascii=False, sort_keys=True)


# The columns of ``audit export --format csv`` (and ``audit query``): the payload as compact canonical JSON.
CSV_COLUMNS = ("tenant", "seq", "at", "kind", "request_id", "actor", "payload", "prev_hash", "hash")


def csv_row(event: AuditRecord) -> list[Any]:
    """One event as a CSV row of :data:`CSV_COLUMNS`."""
    row = event.as_dict()
    row["payload"] = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return [row[c] for c in CSV_COLUMNS]
