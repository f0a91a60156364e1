"""Stage deadlines and reminders: escalate along the chain, or let ``on_timeout`` decide.

Firing is claimed with a conditional update on (request, stage) (``fired_at IS NULL``), in
the same unit of work as everything it causes, so a restart, a second replica or a click
racing the deadline can never fire one twice or lose one: whoever commits first wins, and
the loser's transaction changes nothing. What a firing changes is decided by
:mod:`bot.service.transitions`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.logs import log_context
from bot.service.effects import Effect, Thread, enqueue
from bot.service.render import stage_at
from bot.service.transitions import Transitions
from policy import Status
from store.requests import DueStage
from store.uow import uow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fired:
    """What one deadline did (for logs, metrics and tests)."""

    request_id: str
    stage: int
    action: str  # "escalated" | "expired" | "skipped" | "rejected"
    detail: str = ""
    pool: str = ""  # the pool of the stage whose deadline fired


class DeadlineKeeper:
    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, transitions: Transitions
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.transitions = transitions

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
        async with self.transitions.unit(self.clock.now()) as unit:
            tx = unit.tx
            if not await tx.requests.fire_stage(due.request_id, due.index, unit.now):
                return None
            row = await tx.requests.get_for_update(due.tenant, due.request_id)
            if row.status is not Status.PENDING or row.stage != due.index:
                return Fired(row.id, due.index, "skipped", f"request is {row.status.value} at stage {row.stage}")
            stages = await tx.requests.stages(row.id)
            fired_stage = stage_at(stages, due.index)
            pool = fired_stage.pool if fired_stage else ""
            if (moved := await self.transitions.escalate(unit, row, stages)) is not None:
                result = Fired(row.id, due.index, "escalated", moved.pool, pool)
                unit.count(lambda m: m.escalations.labels(row.tenant).inc())
            else:
                outcome = await self.transitions.expire(unit, row, pool=pool)
                result = Fired(row.id, due.index, "expired", outcome.value, pool)
            if due.index == 0:
                # The first stage ran out of time: its pool missed its service level.
                unit.count(lambda m: m.sla_breaches.labels(row.tenant, pool).inc())
        log.info("deadline fired: request %s stage %s %s %s", row.id, due.index, result.action, result.detail)
        return result

    async def skip_stage(self, tenant: str, request_id: str, index: int, why: str) -> Fired | None:
        """A stage whose card cannot be posted (its channel is gone or archived): move on now.

        Claimed like a deadline (so that stage's deadline will not fire later), then the next pool
        that can serve opens; with none left the request fails closed. The tenant admins are told.
        """
        async with self.transitions.unit(self.clock.now()) as unit:
            tx = unit.tx
            if not await tx.requests.fire_stage(request_id, index, unit.now):
                return None
            row = await tx.requests.get_for_update(tenant, request_id)
            if row.status is not Status.PENDING or row.stage != index:
                return None
            stages = await tx.requests.stages(row.id)
            stage = stage_at(stages, index)
            where = f"<#{stage.channel}>" if stage and stage.channel else "its channel"
            pool = stage.pool if stage else "?"
            await tx.audit.append(
                tenant, "request.stage_unpostable", now=unit.now, request_id=row.id,
                payload={"stage": index, "pool": pool, "error": why},
            )  # fmt: skip
            note = f":warning: Could not post in {where} ({why})"
            if (moved := await self.transitions.escalate(unit, row, stages, note=note)) is not None:
                result = Fired(row.id, index, "escalated", moved.pool, pool)
                then = "It moved to the next pool."
            else:
                reason = f"no reviewer pool can take this request: pool '{pool}' cannot be posted to ({why})"
                await self.transitions.fail_closed(unit, row, reason=reason)
                result = Fired(row.id, index, "rejected", reason, pool)
                then = "It was rejected."
            text = (
                f":warning: Countersign could not post request `{row.id}` ({row.action}) in {where} for pool "
                f"`{pool}`: {why}. {then}"
            )
            await self.transitions.tell_admins(unit, tenant, text)
        log.warning("stage %s of request %s cannot be posted (%s): %s", index, request_id, why, result.action)
        return result

    async def remind(self, due: DueStage) -> bool:
        """Post the stage's reminder in the card's thread, once, and never after a decision."""
        async with self.transitions.unit(self.clock.now()) as unit:
            tx, now = unit.tx, unit.now
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
