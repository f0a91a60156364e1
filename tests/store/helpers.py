"""Small builders shared by the store tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from policy import tally
from policy.types import Choice, Mode, Refusal, Status, TallyResult
from store import DuplicateVote, NewRequest, uow


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
        await tx.requests.open_stage(
            request.id, 0, pool="tier1", channel="C1", now=now, deadline_at=now + timedelta(minutes=5)
        )
    return request_id


async def click(
    sm: async_sessionmaker[AsyncSession], tenant: str, request_id: str, user: str, choice: Choice, now: datetime
) -> str:
    """What the service will do on a button click: one unit of work for vote, tally, decision,
    audit and outbox. Returns ``decided``, ``counted`` or the refusal."""
    async with uow(sm) as tx:

        async def refuse(reason: Refusal) -> str:
            payload = {"reason": reason}
            await tx.audit.append(tenant, "click.refused", now=now, request_id=request_id, actor=user, payload=payload)
            return reason

        request = await tx.requests.get_for_update(tenant, request_id)
        if request.status is not Status.PENDING:
            return await refuse(Refusal.ALREADY_DECIDED)
        try:
            await tx.requests.add_vote(
                request_id, user, choice, stage=request.stage, now=now, reason="no" if choice is Choice.REJECT else None
            )
        except DuplicateVote:
            return await refuse(Refusal.DUPLICATE)
        await tx.audit.append_request_event(
            request, "vote.cast", now=now, sensitive=request.sensitive, actor=user, extra={"vote": choice}
        )
        result = tally(approvals_required=request.approvals_required, votes=await tx.requests.cast_votes(request_id))
        if result is TallyResult.PENDING:
            return "counted"
        outcome = Status.APPROVED if result is TallyResult.APPROVED else Status.REJECTED
        won = await tx.requests.decide(request_id, expected_version=request.version, outcome=outcome, by=user, now=now)
        assert won, "the row lock makes the compare-and-set a formality here"
        decided = await tx.requests.get_or_raise(tenant, request_id)
        await tx.audit.append_request_event(
            decided, "request.decided", now=now, sensitive=decided.sensitive, actor=user
        )
        await tx.outbox.enqueue(
            tenant, "slack.update_card", {"request_id": request_id}, now=now, dedupe_key=f"decided:{request_id}"
        )
        return "decided"
