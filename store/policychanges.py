"""Policy changes proposed in Slack: recorded pending, then decided once by a conditional update."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import rowcount
from store.models import PolicyChange

PENDING, APPROVED, REFUSED, SUPERSEDED = "pending", "approved", "refused", "superseded"


class ChangeRows:
    """Policy changes, within a unit of work (the caller's session)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, change: PolicyChange) -> PolicyChange:
        """Record a pending change; its ``id`` is set on return."""
        change.status = PENDING
        self._session.add(change)
        await self._session.flush()
        return change

    async def get(self, tenant: str, change_id: int) -> PolicyChange | None:
        row = await self._session.get(PolicyChange, change_id, populate_existing=True)
        return row if row is not None and row.tenant == tenant else None

    async def pending(self, tenant: str, *, limit: int = 20) -> Sequence[PolicyChange]:
        """The tenant's changes waiting for a second person, oldest first."""
        stmt = (
            select(PolicyChange)
            .where(PolicyChange.tenant == tenant, PolicyChange.status == PENDING)
            .order_by(PolicyChange.id)
            .limit(limit)
        )
        return (await self._session.scalars(stmt)).all()

    async def pending_like(self, tenant: str, base_version: int, yaml: str) -> PolicyChange | None:
        """A pending change of the tenant made against ``base_version`` with this exact text, if any."""
        stmt = select(PolicyChange).where(
            PolicyChange.tenant == tenant,
            PolicyChange.status == PENDING,
            PolicyChange.base_version == base_version,
            PolicyChange.yaml == yaml,
        )
        return (await self._session.scalars(stmt.limit(1))).first()

    async def decide(
        self, change: PolicyChange, status: str, *, by: str, now: datetime, applied_version: int | None = None
    ) -> bool:
        """Move ``change`` from pending to ``status``; False when it was no longer pending (decided meanwhile).
        The condition is the guarantee that a change is applied once, whoever clicks at the same time."""
        stmt = (
            update(PolicyChange)
            .where(PolicyChange.id == change.id, PolicyChange.status == PENDING)
            .values(status=status, decided_by=by, decided_at=now, applied_version=applied_version)
            .execution_options(synchronize_session=False)
        )
        done = rowcount(await self._session.execute(stmt)) == 1
        if done:
            await self._session.refresh(change)
        return done

    async def set_applied(self, change: PolicyChange, status: str, applied_version: int | None) -> None:
        """Correct a change this unit of work just decided (approved, then found superseded, or its version)."""
        stmt = (
            update(PolicyChange)
            .where(PolicyChange.id == change.id)
            .values(status=status, applied_version=applied_version)
            .execution_options(synchronize_session=False)
        )
        await self._session.execute(stmt)
