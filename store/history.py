"""Read-only: a tenant's requests over a window, with the first pool each was sent to (``countersign simulate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Status
from store.models import Request, RequestStage

CHUNK = 1000  # rows per read: a week of a busy tenant never sits in memory as ORM objects at once


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: str
    action: str
    params: dict[str, Any]  # as the agent sent them: a reviewer's edit is not what the policy saw
    context: dict[str, Any]
    status: Status
    decided_by: str | None
    approvals_required: int
    first_pool: str | None  # the pool of stage 0; None when the policy decided at once
    created_at: datetime
    decided_at: datetime | None


async def requests_since(
    session: AsyncSession, tenant: str, since: datetime, until: datetime
) -> AsyncIterator[HistoryRow]:
    """The tenant's agent requests (not questions) created in ``[since, until)``, oldest first, in chunks."""
    first = RequestStage
    query = (
        select(
            Request.id, Request.action, Request.params, Request.original_params, Request.context, Request.status,
            Request.decided_by, Request.approvals_required, first.pool, Request.created_at, Request.decided_at,
        )
        .outerjoin(first, and_(first.request_id == Request.id, first.index == 0))
        .where(
            Request.tenant == tenant, Request.kind == "request",
            Request.created_at >= since, Request.created_at < until,
        )
        .order_by(Request.created_at, Request.id)
    )  # fmt: skip
    after: tuple[datetime, str] | None = None
    while True:
        page = (
            query
            if after is None
            else query.where(
                (Request.created_at > after[0]) | and_(Request.created_at == after[0], Request.id > after[1])
            )
        )
        rows = (await session.execute(page.limit(CHUNK))).all()
        for r in rows:
            yield HistoryRow(
                r.id, r.action, r.original_params if r.original_params is not None else r.params, r.context,
                r.status, r.decided_by, r.approvals_required, r.pool, r.created_at, r.decided_at,
            )  # fmt: skip
        if len(rows) < CHUNK:
            return
        after = (rows[-1].created_at, rows[-1].id)
