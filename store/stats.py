"""Read-only queries behind ``/hitl stats`` and a reviewer's queue (``/hitl pending``, App Home).

Requests are counted against the pool of their first stage (where the policy sent them);
requests the policy decided at once (auto-approved, denied, failed closed) have no pool and
are counted per tenant only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Subquery, and_, case, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Risk, Status
from store.models import AuditHead, AuditUnsealed, OutboxItem, Pool, PoolMember, Request, RequestStage, Vote


@dataclass(frozen=True)
class PoolCounts:
    """One pool's requests in a window, by status, with breaches and escalations."""

    pool: str
    by_status: dict[Status, int]
    sla_breaches: int  # decided after the first stage's deadline, or expired
    escalations: int  # moved past their first stage

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class PendingRow:
    """A pending request with what judging a reviewer's right to vote on it needs."""

    request: Request
    stages: Sequence[RequestStage]
    votes: Sequence[Vote]


async def pool_counts(session: AsyncSession, tenant: str, since: datetime) -> list[PoolCounts]:
    """Per pool of first stage: requests created at or after ``since``, by status (one GROUP BY)."""
    first = _first_stage()
    breach = or_(
        Request.status == Status.EXPIRED,
        and_(Request.decided_at.is_not(None), Request.decided_at > first.c.deadline_at),
    )
    rows = await session.execute(
        select(
            first.c.pool,
            Request.status,
            func.count(),
            func.sum(case((breach, 1), else_=0)),
            func.sum(case((Request.stage > 0, 1), else_=0)),
        )
        .join(first, first.c.request_id == Request.id)
        .where(Request.tenant == tenant, Request.created_at >= since, Request.status.not_in(_AT_ONCE))
        .group_by(first.c.pool, Request.status)
    )
    by_pool: dict[str, dict[Status, int]] = defaultdict(dict)
    breaches: dict[str, int] = defaultdict(int)
    escalations: dict[str, int] = defaultdict(int)
    for pool, status, count, breached, escalated in rows.all():
        by_pool[pool][Status(status)] = int(count)
        breaches[pool] += int(breached or 0)
        escalations[pool] += int(escalated or 0)
    return [PoolCounts(p, by_pool[p], breaches[p], escalations[p]) for p in sorted(by_pool)]


async def decision_latencies(session: AsyncSession, tenant: str, since: datetime) -> dict[str, list[timedelta]]:
    """Per pool of first stage: how long each request took to a reviewer's decision (approved/rejected)."""
    first = _first_stage()
    rows = await session.execute(
        select(first.c.pool, Request.created_at, Request.decided_at)
        .join(first, first.c.request_id == Request.id)
        .where(
            Request.tenant == tenant,
            Request.created_at >= since,
            Request.status.in_([Status.APPROVED, Status.REJECTED]),
            Request.decided_at.is_not(None),
        )
    )
    out: dict[str, list[timedelta]] = defaultdict(list)
    for pool, created_at, decided_at in rows.all():
        out[pool].append(decided_at - created_at)
    return dict(out)


async def status_counts(session: AsyncSession, tenant: str, since: datetime) -> dict[Status, int]:
    """All of the tenant's requests created at or after ``since``, by status."""
    rows = await session.execute(
        select(Request.status, func.count())
        .where(Request.tenant == tenant, Request.created_at >= since)
        .group_by(Request.status)
    )
    return {Status(status): int(count) for status, count in rows.all()}


async def tenants_with_member(session: AsyncSession, user: str) -> set[str]:
    """The tenants with a pool that has ``user`` as a member."""
    rows = await session.scalars(
        select(Pool.tenant).distinct().join(PoolMember, PoolMember.pool_id == Pool.id).where(PoolMember.user_id == user)
    )
    return set(rows.all())


PENDING_READ_LIMIT = 200  # a tenant's pending requests read for one /hitl pending or App Home


async def pending_rows(
    session: AsyncSession,
    tenant: str,
    *,
    pool: str | None = None,
    limit: int = PENDING_READ_LIMIT,
    riskiest_first: bool = False,
) -> list[PendingRow]:
    """The tenant's pending requests, oldest first, with their stages and votes (three queries).

    With ``pool``: only requests with an open stage in that pool. With ``riskiest_first``, the highest
    risk first and then the oldest, in the query: the ``limit`` then cuts the least urgent, not a
    critical request that came after ``limit`` older ones (unset risk counts as medium, as shown).
    """
    # Questions have no Approve/Reject: they are answered on their card, not from a queue.
    query = select(Request).where(Request.tenant == tenant, Request.status == Status.PENDING, Request.kind == "request")
    if pool is not None:
        opened = select(RequestStage.request_id).where(
            RequestStage.request_id == Request.id, RequestStage.pool == pool, RequestStage.index <= Request.stage
        )
        query = query.where(opened.exists())
    if riskiest_first:  # successive ORDER BYs add up: risk, then age
        query = query.order_by(case(_RISK_RANK, value=Request.risk, else_=_RISK_RANK[Risk.MEDIUM]).desc())
    requests = (await session.scalars(query.order_by(Request.created_at, Request.id).limit(limit))).all()
    ids = [r.id for r in requests]
    if not ids:
        return []
    stages: dict[str, list[RequestStage]] = defaultdict(list)
    for stage in await session.scalars(
        select(RequestStage).where(RequestStage.request_id.in_(ids)).order_by(RequestStage.index)
    ):
        stages[stage.request_id].append(stage)
    votes: dict[str, list[Vote]] = defaultdict(list)
    for vote in await session.scalars(select(Vote).where(Vote.request_id.in_(ids)).order_by(Vote.id)):
        votes[vote.request_id].append(vote)
    return [PendingRow(r, stages[r.id], votes[r.id]) for r in requests]


_AT_ONCE = [Status.AUTO_APPROVED, Status.DENIED]
_RISK_RANK = {risk: risk.rank for risk in Risk}


def _first_stage() -> Subquery:
    return (
        select(RequestStage.request_id, RequestStage.pool, RequestStage.deadline_at)
        .where(RequestStage.index == 0)
        .subquery("first_stage")
    )


@dataclass(frozen=True)
class Gauges:
    """What the operator's gauges show, read in one unit of work (``/metrics``)."""

    queue_depth: list[tuple[str, str, int]]  # (tenant, pool of the current stage, pending requests)
    outbox_backlog: list[tuple[str, int, datetime | None]]  # (kind, undelivered items, oldest created_at)
    outbox_failed: list[tuple[str, int]]  # (kind, items given up on)
    audit_events: list[tuple[str, int]]  # (tenant, events of its chain: sealed and not yet sealed)
    # (tenant, pool of the current stage, oldest pending request's created_at, earliest open-stage deadline)
    pending_ages: list[tuple[str, str, datetime, datetime]]


async def gauges(session: AsyncSession) -> Gauges:
    """Queue depth and oldest pending per pool, outbox backlog and failures per kind, audit chain length per tenant."""
    depth = await session.execute(
        select(
            Request.tenant,
            RequestStage.pool,
            func.count(),
            func.min(Request.created_at),
            func.min(RequestStage.deadline_at),
        )
        .join(RequestStage, (RequestStage.request_id == Request.id) & (RequestStage.index == Request.stage))
        .where(Request.status == Status.PENDING)
        .group_by(Request.tenant, RequestStage.pool)
    )
    backlog = await session.execute(
        select(OutboxItem.kind, func.count(), func.min(OutboxItem.created_at))
        .where(OutboxItem.done_at.is_(None), OutboxItem.failed_at.is_(None))
        .group_by(OutboxItem.kind)
    )
    failed = await session.execute(
        select(OutboxItem.kind, func.count()).where(OutboxItem.failed_at.is_not(None)).group_by(OutboxItem.kind)
    )
    # One statement: an event sealed meanwhile moves from one side of the union to the other, counted once.
    parts = union_all(
        select(AuditHead.tenant, AuditHead.seq.label("n")),
        select(AuditUnsealed.tenant, func.count().label("n")).group_by(AuditUnsealed.tenant),
    ).subquery()
    heads = await session.execute(select(parts.c.tenant, func.sum(parts.c.n)).group_by(parts.c.tenant))
    pending = depth.all()
    return Gauges(
        queue_depth=[(t, p, int(n)) for t, p, n, _, _ in pending],
        pending_ages=[(t, p, oldest, deadline) for t, p, _, oldest, deadline in pending],
        outbox_backlog=[(k, int(n), oldest) for k, n, oldest in backlog.all()],
        outbox_failed=[(k, int(n)) for k, n in failed.all()],
        audit_events=[(t, int(seq)) for t, seq in heads.all()],
    )
