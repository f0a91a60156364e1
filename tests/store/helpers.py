"""Small builders shared by the store tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.service.reviews import Reviews
from bot.service.signals import Signals
from bot.service.transitions import Transitions
from policy.types import Choice, Mode, Status
from store import NewRequest, uow


async def pending_request(
    sm: async_sessionmaker[AsyncSession],
    tenant: str,
    now: datetime,
    *,
    request_id: str = "req-1",
    approvals: int = 1,
    params: dict[str, object] | None = None,
    sensitive: tuple[str, ...] = (),
) -> str:
    async with uow(sm) as tx:
        request, _ = await tx.requests.create(
            NewRequest(
                id=request_id,
                tenant=tenant,
                action="process_refund",
                params=params or {"amount": 620},
                status=Status.PENDING,
                mode=Mode.SYNC,
                approvals_required=approvals,
                sensitive=sensitive,
            ),
            now=now,
        )
        await tx.stages.open_stage(
            request.id, 0, pool="tier1", channel="C1", now=now, deadline_at=now + timedelta(minutes=5)
        )
    return request_id


def reviews(sm: async_sessionmaker[AsyncSession], manifests: Path, clock: Callable[[], datetime]) -> Reviews:
    """The real reviewers' use case over ``sm``, deciding with the manifests in ``manifests``."""
    policies = PolicySet(manifests)
    transitions = Transitions(sessionmaker=sm, policies=policies, signals=Signals())
    return Reviews(sessionmaker=sm, policies=policies, clock=_Clock(clock), transitions=transitions)


async def click(reviews: Reviews, tenant: str, request_id: str, user: str, choice: Choice) -> str:
    """A button click through the service. Returns ``decided``, ``counted`` or the refusal."""
    ref = CardRef(t=tenant, r=request_id)
    outcome = await reviews.vote(ref=ref, user=user, choice=choice, reason="no" if choice is Choice.REJECT else None)
    if outcome.refusal is not None:
        return outcome.refusal
    return "decided" if outcome.decided else "counted"


class _Clock:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now()
