"""The one place a request changes state: decided by votes, cancelled, expired, failed closed, escalated.

Every transition is a compare-and-set on the request's version (the caller holds the row lock;
the condition is the backstop), with its audit event, the outbox effects it causes (cards
re-rendered, a thread note, the agent's callback, App Homes refreshed) and its metrics, all in
the caller's unit of work. What must happen after the commit (long polls woken, the outbox
worker and the deadline scheduler nudged, counters bumped) is collected on the :class:`Unit`
and announced by :meth:`Transitions.unit` once the transaction has committed, never before: a
rolled-back transition announces nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks
from bot.errors import Conflict
from bot.metrics import Metrics
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import (
    Callback,
    DirectMessage,
    Effect,
    PostCard,
    Thread,
    UpdateCards,
    callback_key,
    enqueue,
    post_key,
    refresh_homes,
)
from bot.service.signals import Signals
from policy import Mode, OnTimeout, Status, on_timeout_for
from policy.routing import next_stage
from store.models import Request, RequestStage
from store.uow import Tx, uow

Count = Callable[[Metrics], None]


@dataclass
class Unit:
    """One unit of work that may change requests, and what to announce once it commits."""

    tx: Tx
    now: datetime
    decided: list[str] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)

    def count(self, bump: Count) -> None:
        """Bump a metric after the commit (a rolled-back change is not counted)."""
        self.counts.append(bump)


@dataclass(frozen=True, slots=True)
class Escalated:
    """The stage a request moved to."""

    index: int
    pool: str
    channel: str | None


class Transitions:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        signals: Signals,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.signals = signals
        self.metrics = metrics

    @asynccontextmanager
    async def unit(self, now: datetime) -> AsyncIterator[Unit]:
        """A write unit of work; its changes are announced after it commits."""
        async with uow(self.sessionmaker) as tx:
            unit = Unit(tx, now)
            yield unit
            queued, due = tx.outbox.enqueued > 0, tx.requests.earliest_opened
        self.announce(unit, queued=queued, due=due)

    def announce(self, unit: Unit, *, queued: bool, due: datetime | None) -> None:
        for request_id in unit.decided:
            self.signals.decided(request_id)
        if self.metrics is not None:
            for bump in unit.counts:
                bump(self.metrics)
        if queued:
            self.signals.queued()
        if due is not None:
            self.signals.stage_opened(due)

    # -- decisions ------------------------------------------------------------------------

    async def decide_by_votes(
        self, unit: Unit, row: Request, *, outcome: Status, by: str, reason: str | None, pool: str
    ) -> Request:
        """The tally decided: approved or rejected by ``by``'s vote."""
        decided = await self._settle(
            unit, row, outcome=outcome, by=by, reason=reason, event="request.decided",
            payload={"status": outcome.value, "reason": reason}, actor=by,
        )  # fmt: skip
        seconds = (unit.now - row.created_at).total_seconds()
        unit.count(lambda m: m.decided(row.tenant, row.action, outcome.value, pool, seconds))
        return decided

    async def cancel(self, unit: Unit, row: Request) -> Request:
        """The agent withdrew its request."""
        decided = await self._settle(
            unit, row, outcome=Status.CANCELLED, by="agent", reason=None, event="request.cancelled",
            payload={}, note=":no_entry_sign: The agent withdrew this request.", actor="agent",
        )  # fmt: skip
        unit.count(lambda m: m.final(row.tenant, row.action, Status.CANCELLED.value))
        return decided

    async def expire(self, unit: Unit, row: Request, *, pool: str) -> Status:
        """The last deadline passed with no decision: ``on_timeout`` decides. Returns the outcome."""
        on_timeout = on_timeout_for(self.policies.tenants.get(row.tenant), row.action)
        outcome = Status.APPROVED if on_timeout is OnTimeout.APPROVE else Status.REJECTED
        reason = f"no decision before the last deadline; on_timeout is {on_timeout.value}"
        verb = "approved" if outcome is Status.APPROVED else "rejected"
        await self._settle(
            unit, row, outcome=outcome, status=Status.EXPIRED, by="timeout", reason=reason, event="request.expired",
            payload={"outcome": outcome.value, "reason": reason},
            note=f":hourglass: Expired with no decision; {verb} as the policy says (on_timeout: {on_timeout.value}).",
        )  # fmt: skip
        seconds = (unit.now - row.created_at).total_seconds()

        def bump(m: Metrics) -> None:
            m.timeouts.labels(row.tenant, outcome.value).inc()
            m.decided(row.tenant, row.action, Status.EXPIRED.value, pool, seconds)

        unit.count(bump)
        return outcome

    async def fail_closed(self, unit: Unit, row: Request, *, reason: str) -> Request:
        """No pool is left to review a pending request: rejected by the policy."""
        decided = await self._settle(
            unit, row, outcome=Status.REJECTED, by="policy", reason=reason, event="request.decided",
            payload={"status": Status.REJECTED.value, "reason": reason}, note=f":no_entry: {reason}",
        )  # fmt: skip
        unit.count(lambda m: m.final(row.tenant, row.action, Status.REJECTED.value))
        return decided

    async def _settle(
        self,
        unit: Unit,
        row: Request,
        *,
        outcome: Status,
        by: str,
        reason: str | None,
        event: str,
        payload: dict[str, Any],
        note: str | None = None,
        status: Status | None = None,
        actor: str | None = None,
    ) -> Request:
        tx, now = unit.tx, unit.now
        won = await tx.requests.decide(
            row.id, expected_version=row.version, outcome=outcome, status=status, now=now, by=by, reason=reason
        )
        if not won:
            # The caller holds the row lock, so this is unreachable; if it ever happens, nothing of it commits.
            raise Conflict("this request changed while it was being decided; please try again")
        decided = await tx.requests.get_or_raise(row.tenant, row.id)
        await tx.audit.append(row.tenant, event, now=now, request_id=row.id, actor=actor, payload=payload)
        text = note or blocks.outcome_line(render.card(decided, [], [], None, for_stage=decided.stage))
        await self._decided_effects(tx, decided, now, text)
        unit.decided.append(row.id)
        return decided

    @staticmethod
    async def _decided_effects(tx: Tx, row: Request, now: datetime, note: str) -> None:
        """What every decision causes: cards re-rendered, a note in their threads, the agent's callback."""
        await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
        await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note), now)
        if row.mode is Mode.ASYNC and row.callback_url:
            await enqueue(tx, row.tenant, Effect.CALLBACK, Callback(request_id=row.id), now, callback_key(row.id))
        # The request leaves every reviewer's App Home queue.
        await refresh_homes(tx, row.tenant, row.id, now)

    # -- stages ---------------------------------------------------------------------------

    async def escalate(
        self, unit: Unit, row: Request, stages: Sequence[RequestStage], *, note: str | None = None
    ) -> Escalated | None:
        """Open the next stage that can serve (``stages``: those opened so far); None when none is left."""
        policy = self.policies.tenants.get(row.tenant)
        if policy is None:
            return None
        tx, now = unit.tx, unit.now
        chain = policy.stages.get(row.action) or policy.stages[""]
        pools = await tx.pools.views(row.tenant)
        stage, skipped = next_stage(chain, [s.pool for s in stages], row.approvals_required, pools, row.on_behalf_of)
        if stage is None:
            return None
        index = row.stage + 1
        channel = pools[stage.pool].channel
        remind_at = now + stage.remind_after if stage.remind_after else None
        await tx.requests.open_stage(
            row.id, index, pool=stage.pool, channel=channel, now=now, deadline_at=now + stage.timeout,
            remind_at=remind_at,
        )  # fmt: skip
        moved = await tx.requests.transition(
            row.id, expected_status=Status.PENDING, expected_version=row.version, new_status=Status.PENDING,
            now=now, stage=index,
        )  # fmt: skip
        if not moved:
            raise Conflict("this request changed while it was being escalated")  # rolls the whole change back
        passed = [f"{s.pool} ({s.why})" for s in skipped]
        await tx.audit.append(
            row.tenant, "request.escalated", now=now, request_id=row.id,
            payload={"from_stage": row.stage, "stage": index, "pool": stage.pool, "skipped": passed},
        )  # fmt: skip
        where = f" in <#{channel}>." if channel else "."
        text = (note or ":arrow_heading_up: No decision in time") + f": escalated to `{stage.pool}`" + where
        await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=text), now)
        card = PostCard(request_id=row.id, stage=index)
        await enqueue(tx, row.tenant, Effect.POST_CARD, card, now, post_key(row.id, index))
        await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
        await refresh_homes(tx, row.tenant, row.id, now)  # the new pool's members now see it in their queue
        return Escalated(index, stage.pool, channel)

    async def tell_admins(self, unit: Unit, tenant: str, text: str) -> None:
        """A direct message to each of the tenant's admins (something went wrong that a person must see)."""
        policy = self.policies.tenants.get(tenant)
        for admin in policy.manifest.admins if policy else []:
            await enqueue(unit.tx, tenant, Effect.DM, DirectMessage(user=admin, text=text), unit.now)
