"""Stage deadlines and reminders: escalate along the chain, or let ``on_timeout`` decide.

Firing is claimed with a conditional update on (request, stage) (``fired_at IS NULL``), in
the same unit of work as everything it causes, so a restart, a second replica or a click
racing the deadline can never fire one twice or lose one: whoever commits first wins, and
the loser's transaction changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.logs import log_context
from bot.metrics import Metrics
from bot.policyset import PolicySet
from bot.service.effects import DirectMessage, Effect, PostCard, Thread, UpdateCards, enqueue, post_key, refresh_homes
from bot.service.render import stage_at
from bot.service.transitions import enqueue_decided
from bot.waiters import DecisionBus
from policy import OnTimeout, Status
from policy.routing import next_stage
from store.models import Request, RequestStage
from store.requests import DueStage
from store.uow import Tx, uow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fired:
    """What one deadline did (for logs, metrics and tests)."""

    request_id: str
    stage: int
    action: str  # "escalated" | "expired" | "skipped"
    detail: str = ""
    pool: str = ""  # the pool of the stage whose deadline fired


class DeadlineKeeper:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        bus: DecisionBus,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.bus = bus
        self.metrics = metrics
        # Told when skip_stage opens a stage due at ``at`` (the runtime sets the scheduler's poke): it runs
        # outside a deadline sweep, so the armed wake-up may be later than the new stage's deadline.
        self.rearm: Callable[[datetime], None] = lambda at: None

    async def run_due(self, *, batch: int = 100) -> list[Fired]:
        """Send every due reminder and fire every due deadline (at ``clock.now()``)."""
        fired: list[Fired] = []
        while True:
            now = self.clock.now()
            async with uow(self.sessionmaker, read_only=True) as tx:
                reminders = await tx.requests.due_reminders(now, limit=batch)
                deadlines = await tx.requests.due_stages(now, limit=batch)
            for due in reminders:
                with log_context(tenant=due.tenant, request_id=due.request_id):
                    await self.remind(due)
            for due in deadlines:
                with log_context(tenant=due.tenant, request_id=due.request_id):
                    result = await self.fire(due)
                if result is not None:
                    fired.append(result)
            if len(deadlines) < batch and len(reminders) < batch:
                return fired

    async def next_wakeup(self) -> datetime | None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await tx.requests.next_deadline()

    async def fire(self, due: DueStage) -> Fired | None:
        """Fire one stage's deadline; None if another replica (or a decision) got there first."""
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            if not await tx.requests.fire_stage(due.request_id, due.index, now):
                return None
            row = await tx.requests.get_for_update(due.tenant, due.request_id)
            if row.status is not Status.PENDING or row.stage != due.index:
                return Fired(row.id, due.index, "skipped", f"request is {row.status.value} at stage {row.stage}")
            stages = await tx.requests.stages(row.id)
            due_stage = stage_at(stages, due.index)
            result = await self._escalate(tx, row, stages, now) or await self._expire(tx, row, now)
            result = replace(result, pool=due_stage.pool if due_stage else "")
        if result.action == "expired":
            self.bus.notify(row.id)
        if self.metrics is not None:
            self._count(row, due.index, result)
        log.info("deadline fired: request %s stage %s %s %s", row.id, due.index, result.action, result.detail)
        return result

    def _count(self, row: Request, stage: int, result: Fired) -> None:
        assert self.metrics is not None
        if result.action == "escalated":
            self.metrics.escalations.labels(row.tenant).inc()
        if result.action == "expired":
            self.metrics.timeouts.labels(row.tenant, result.detail).inc()
            seconds = (self.clock.now() - row.created_at).total_seconds()
            self.metrics.decided(row.tenant, row.action, Status.EXPIRED.value, result.pool, seconds)
        if stage == 0 and result.action in ("escalated", "expired"):
            # The first stage ran out of time: its pool missed its service level.
            self.metrics.sla_breaches.labels(row.tenant, result.pool).inc()

    async def skip_stage(self, tenant: str, request_id: str, index: int, why: str) -> Fired | None:
        """A stage whose card cannot be posted (its channel is gone or archived): move on now.

        Claimed like a deadline (so that stage's deadline will not fire later), then the next pool
        that can serve opens; with none left the request fails closed. The tenant admins are told.
        """
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            if not await tx.requests.fire_stage(request_id, index, now):
                return None
            row = await tx.requests.get_for_update(tenant, request_id)
            if row.status is not Status.PENDING or row.stage != index:
                return None
            stages = await tx.requests.stages(row.id)
            stage = stage_at(stages, index)
            where = f"<#{stage.channel}>" if stage and stage.channel else "its channel"
            pool = stage.pool if stage else "?"
            note = f":warning: Could not post in {where} ({why})"
            await tx.audit.append(
                tenant, "request.stage_unpostable", now=now, request_id=row.id,
                payload={"stage": index, "pool": pool, "error": why},
            )  # fmt: skip
            result = await self._escalate(tx, row, stages, now, note=note)
            if result is None:
                reason = f"no reviewer pool can take this request: pool '{pool}' cannot be posted to ({why})"
                if not await tx.requests.decide(
                    row.id, expected_version=row.version, outcome=Status.REJECTED, now=now, by="policy", reason=reason
                ):
                    raise RuntimeError(f"request {row.id} changed under its row lock")
                await tx.audit.append(
                    tenant,
                    "request.decided",
                    now=now,
                    request_id=row.id,
                    payload={"status": "rejected", "reason": reason},
                )
                await enqueue_decided(tx, row, now, f":no_entry: {reason}")
                result = Fired(row.id, index, "rejected", reason, pool)
            policy = self.policies.tenants.get(tenant)
            text = (
                f":warning: Countersign could not post request `{row.id}` ({row.action}) in {where} for pool "
                f"`{pool}`: {why}. "
                + ("It moved to the next pool." if result.action == "escalated" else "It was rejected.")
            )
            for admin in policy.manifest.admins if policy else []:
                await enqueue(tx, row.tenant, Effect.DM, DirectMessage(user=admin, text=text), now)
            due = tx.requests.earliest_opened
        if due is not None:
            self.rearm(due)
        if result.action == "rejected":
            self.bus.notify(request_id)
        log.warning("stage %s of request %s cannot be posted (%s): %s", index, request_id, why, result.action)
        return result

    async def _escalate(
        self, tx: Tx, row: Request, stages: Sequence[RequestStage], now: datetime, note: str | None = None
    ) -> Fired | None:
        """Open the next stage that can serve (``stages``: those opened so far); None when none is left."""
        policy = self.policies.tenants.get(row.tenant)
        if policy is None:
            return None
        chain = policy.stages.get(row.action) or policy.stages[""]
        pools = await tx.pools.views(row.tenant)
        stage, skipped = next_stage(chain, [s.pool for s in stages], row.approvals_required, pools, row.on_behalf_of)
        if stage is None:
            return None
        index = row.stage + 1
        channel = pools[stage.pool].channel
        remind_at = now + stage.remind_after if stage.remind_after else None
        await tx.requests.open_stage(
            row.id,
            index,
            pool=stage.pool,
            channel=channel,
            now=now,
            deadline_at=now + stage.timeout,
            remind_at=remind_at,
        )
        moved = await tx.requests.transition(
            row.id,
            expected_status=Status.PENDING,
            expected_version=row.version,
            new_status=Status.PENDING,
            now=now,
            stage=index,
        )
        if not moved:
            raise RuntimeError(f"request {row.id} changed under its row lock")  # rolls the whole firing back
        passed = [f"{s.pool} ({s.why})" for s in skipped]
        await tx.audit.append(
            row.tenant, "request.escalated", now=now, request_id=row.id,
            payload={"from_stage": row.stage, "stage": index, "pool": stage.pool, "skipped": passed},
        )  # fmt: skip
        note = (
            (note or ":arrow_heading_up: No decision in time")
            + f": escalated to `{stage.pool}`"
            + (f" in <#{channel}>." if channel else ".")
        )
        await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note), now)
        await enqueue(
            tx, row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=index), now, post_key(row.id, index)
        )
        await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
        await refresh_homes(tx, row.tenant, row.id, now)  # the new pool's members now see it in their queue
        return Fired(row.id, row.stage, "escalated", stage.pool)

    async def _expire(self, tx: Tx, row: Request, now: datetime) -> Fired:
        policy = self.policies.tenants.get(row.tenant)
        rule = policy.manifest.actions.get(row.action) if policy else None
        on_timeout = (rule.on_timeout if rule else None) or (
            policy.manifest.defaults.on_timeout if policy else OnTimeout.REJECT
        )
        outcome = Status.APPROVED if on_timeout is OnTimeout.APPROVE else Status.REJECTED
        reason = f"no decision before the last deadline; on_timeout is {on_timeout.value}"
        decided = await tx.requests.decide(
            row.id,
            expected_version=row.version,
            outcome=outcome,
            status=Status.EXPIRED,
            now=now,
            by="timeout",
            reason=reason,
        )
        if not decided:
            raise RuntimeError(f"request {row.id} changed under its row lock")
        await tx.audit.append(
            row.tenant,
            "request.expired",
            now=now,
            request_id=row.id,
            payload={"outcome": outcome.value, "reason": reason},
        )
        verb = "approved" if outcome is Status.APPROVED else "rejected"
        note = f":hourglass: Expired with no decision; {verb} as the policy says (on_timeout: {on_timeout.value})."
        await enqueue_decided(tx, row, now, note)
        return Fired(row.id, row.stage, "expired", outcome.value)

    async def remind(self, due: DueStage) -> bool:
        """Post the stage's reminder in the card's thread, once, and never after a decision."""
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            if not await tx.requests.mark_reminded(due.request_id, due.index, now):
                return False
            row = await tx.requests.get(due.tenant, due.request_id)
            if row is None or row.status is not Status.PENDING:
                return False
            stage = stage_at(await tx.requests.stages(row.id), due.index)
            pools = await tx.pools.views(row.tenant)
            voted = {v.user for v in await tx.requests.cast_votes(row.id)}
            members = (
                pools[stage.pool].eligible(exclude=row.on_behalf_of) - voted if stage and stage.pool in pools else set()
            )
            mentions = " ".join(f"<@{u}>" for u in sorted(members))
            when = f"<!date^{int(due.deadline_at.timestamp())}^{{time}}|{due.deadline_at:%H:%M UTC}>"
            text = f":alarm_clock: Reminder: this request needs a decision before {when}. {mentions}".rstrip()
            await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=text), now)
            await tx.audit.append(
                row.tenant, "request.reminded", now=now, request_id=row.id, payload={"stage": due.index}
            )
        return True
