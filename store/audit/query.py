"""Exploring a tenant's sealed chain by what people ask about: an action, a person, an outcome, a window
(``/hitl audit``, the App Home's audit view and ``countersign audit query``).

Newest first, a page at a time: a page ends at a ``seq``, and the next page starts below it, so paging
stays exact while new events are sealed above. Filters on the action or the outcome read the request
an event belongs to; events of no request (pool changes, manifest loads) match only filters on the
person and the time. Unsealed events (sealed within a second of their commit) show once sealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Status
from store.audit.chain import AuditRecord, record_of
from store.audit.log import SEALED_COLUMNS
from store.models import AuditEvent, Request


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None  # whose events: a Slack user id, "agent:NAME", "policy", ...
    outcome: Status | None = None  # the request's status, or what its timeout decided
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: Sequence[AuditRecord]
    older: int | None  # pass as ``before`` for the next page; None at the start of the chain


async def query_audit(
    session: AsyncSession, tenant: str, where: AuditFilter, *, limit: int = 20, before: int | None = None
) -> AuditPage:
    """Up to ``limit`` of the tenant's sealed events matching ``where``, newest first, below seq ``before``."""
    query = select(*SEALED_COLUMNS).where(AuditEvent.tenant == tenant)
    if where.action is not None or where.outcome is not None:
        query = query.join(Request, Request.id == AuditEvent.request_id).where(Request.tenant == tenant)
        if where.action is not None:
            query = query.where(Request.action == where.action)
        if where.outcome is not None:
            query = query.where(or_(Request.status == where.outcome, Request.outcome == where.outcome))
    if where.actor is not None:
        query = query.where(AuditEvent.actor == where.actor)
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows = (await session.execute(query.order_by(AuditEvent.seq.desc()).limit(limit + 1))).all()
    events = [record_of(r) for r in rows[:limit]]
    older = events[-1].seq if len(rows) > limit and events else None
    return AuditPage(events, older)
