"""``countersign simulate``: a tenant's recorded requests replayed through a candidate policy, read-only."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from policy import Status, TenantPolicy
from policy.simulation import Recorded, Route, Simulation, simulate
from policy.types import Outcome
from store.history import HistoryRow, requests_since
from store.uow import uow

NOT_A_PERSON = frozenset({"policy", "timeout", "agent"})


def recorded(row: HistoryRow) -> Recorded:
    """What the policy decided for a stored request when it arrived, and how its review went."""
    if row.status is Status.AUTO_APPROVED:
        route = Route(Outcome.AUTO_APPROVE)
    elif row.first_pool is None:  # decided at once, without a card: denied, or refused (failed closed)
        route = Route(Outcome.DENY)
    else:
        route = Route(Outcome.REVIEW, row.first_pool, row.approvals_required)
    by_person = row.decided_by is not None and row.decided_by not in NOT_A_PERSON and row.decided_at is not None
    seconds = (row.decided_at - row.created_at).total_seconds() if by_person and row.decided_at else None
    return Recorded(
        id=row.id, action=row.action, params=row.params, context=row.context, route=route,
        created_at=row.created_at, human_seconds=seconds,
        approved_by_person=by_person and row.status is Status.APPROVED,
    )  # fmt: skip


async def simulate_window(
    sessionmaker: async_sessionmaker[AsyncSession],
    candidate: TenantPolicy,
    *,
    since: datetime,
    until: datetime,
    baseline: TenantPolicy | None = None,
) -> Simulation:
    """The candidate's decisions on the tenant's requests created in ``[since, until)``, compared with what
    happened or with ``baseline``'s (see :func:`policy.simulation.simulate`); reads only."""
    async with uow(sessionmaker, read_only=True) as tx:
        history = [recorded(row) async for row in requests_since(tx.session, candidate.tenant, since, until)]
    # Replaying a busy week is seconds of CPU: in a thread, so the service's loop (intake, acks) keeps running.
    return await asyncio.to_thread(simulate, candidate, history, baseline=baseline)
