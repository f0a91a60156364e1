"""Stage deadlines and reminders: escalate along the chain, or let ``on_timeout`` decide.

Firing is claimed with a conditional update on (request, stage) (``fired_at IS NULL``), in
the same unit of work as everything it causes, so a restart, a second replica or a click
racing the deadline can never fire one twice or lose one: whoever commits first wins, and
the loser's transaction changes nothing. What a firing changes is decided by
:mod:`bot.service.transitions`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.logs import log_context
from bot.service.effects import Effect, Thread, enqueue, new_item
from bot.service.render import stage_at
from bot.service.transitions import QUESTION, Transitions, Unit
from policy import Status
from store.audit import NewEvent
from store.models import Request
from store.outbox import NewItem
from store.stages import ClaimedStage, DueStage
from store.uow import uow

log = logging.getLogger(__name__)

RUN_BATCHES = 20  # batches of deadlines one run_due fires before it returns, unless they come back full


@dataclass(frozen=True, slots=True)
class Fired:
    """What one deadline did (for logs, metrics and tests)."""

    request_id: str
    stage: int
    action: str  # "escalated" | "expired" | "skipped" | "rejected"
    detail: str = ""
    pool: str = ""  # the pool of the stage whose deadline fired
    tenant: str = ""


class DeadlineKeeper:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        transitions: Transitions,
        batch: int = 200,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.transitions = transitions
        self.batch = batch

    async def run_due(self, *, batch: int | None = None) -> list[Fired]:
        """Send every due reminder and fire every due deadline (at ``clock.now()``), ``batch`` per unit of work."""
        size = batch or self.batch
        fired: list[Fired] = []
        # Finding due reminders scans every pending stage (their times are not indexed), so it is
        # repeated only while batches come back full. Due deadlines are found by index, and claimed
        # again as soon as a batch commits while any came due meanwhile: under a steady stream the
        # next batch starts at once, not after a wake-up is armed and spent. A backlog is drained
        # whole; otherwise a call returns after ``RUN_BATCHES`` batches, so reminders are looked
        # for again soon.
        reminders = deadlines = True
        batches = 0
        while reminders or deadlines:
            if reminders:
                reminders = await self._remind_batch(size) == size
            if deadlines:
                claimed, results = await self._fire_batch(size)
                fired.extend(results)
                batches += 1
                deadlines = claimed == size or (claimed > 0 and batches < RUN_BATCHES)
        return fired

    async def _fire_batch(self, size: int) -> tuple[int, list[Fired]]:
        """Claim up to ``size`` due deadlines and fire them in one unit of work: (how many were claimed, what fired).

        The claim commits with everything the firings cause, or not at all. Should anything go
        wrong, the whole batch rolls back and its stages are fired one per unit of work, so one
        bad request costs its batch the speed, never the others their firing.
        """
        claimed: list[ClaimedStage] = []
        try:
            async with self.transitions.unit(self.clock.now()) as unit:
                claimed = await unit.tx.stages.claim_due_stages(unit.now, limit=size)
                results = await self._fire_claimed(unit, claimed) if claimed else []
        except Exception:
            if not claimed:
                raise
            log.exception("firing %s deadlines together failed; firing them one at a time", len(claimed))
            return len(claimed), await self._fire_one_by_one(size)
        for r in results:
            with log_context(tenant=r.tenant, request_id=r.request_id):
                log.info("deadline fired: request %s stage %s %s %s", r.request_id, r.stage, r.action, r.detail)
        return len(claimed), results

    async def _fire_claimed(self, unit: Unit, claimed: Sequence[ClaimedStage]) -> list[Fired]:
        """Fire claimed deadlines: one read of their requests (locked), one of the pools they reached,
        one of each tenant's pools, then the escalations and the expiries each in a few statements."""
        tx = unit.tx
        ids = [c.request_id for c in claimed]
        rows = await tx.requests.lock_many(ids)
        reached = await tx.stages.reached_pools(ids)
        results: dict[tuple[str, int], Fired] = {}
        live: list[tuple[ClaimedStage, Request]] = []
        # Cross-pool quorums: each line's stage has its own deadline; a request's lines due together move together.
        lines_due: dict[str, list[ClaimedStage]] = {}
        for due in claimed:
            row = rows[due.request_id]
            if row.status is not Status.PENDING or (due.line is None and row.stage != due.index):
                # Decided (or moved on) after the claim read it: by a vote that held the lock first.
                why = f"request is {row.status.value} at stage {row.stage}"
                results[(row.id, due.index)] = Fired(row.id, due.index, "skipped", why, tenant=row.tenant)
            elif due.line is not None:
                lines_due.setdefault(row.id, []).append(due)
            else:
                live.append((due, row))
        tenants = {row.tenant for _, row in live} | {rows[r].tenant for r in lines_due}
        pools = {t: await tx.pools.views(t) for t in sorted(tenants)}
        moved = await self.transitions.escalate_many(unit, [(row, reached[row.id]) for _, row in live], pools=pools)
        expiring: list[tuple[ClaimedStage, Request]] = []
        for (due, row), escalated in zip(live, moved, strict=True):
            if escalated is None:
                expiring.append((due, row))
                continue
            results[(row.id, due.index)] = Fired(row.id, due.index, "escalated", escalated.pool, due.pool, row.tenant)
            unit.count(lambda m, tenant=row.tenant: m.escalations.labels(tenant).inc())  # type: ignore[misc]
        first_of_line: set[tuple[str, int]] = set()
        if lines_due:
            stages = await tx.stages.stages_of(list(lines_due))
            for request_id, opened in stages.items():
                firsts: dict[int | None, int] = {}
                for stage in opened:
                    firsts.setdefault(stage.line, stage.index)
                first_of_line |= {(request_id, i) for i in firsts.values()}
            asked = [
                (rows[r], stages[r], [d.line for d in dues if d.line is not None]) for r, dues in lines_due.items()
            ]
            went = await self.transitions.escalate_lines(unit, asked, pools=pools)
            for (row, _, _), opened_now in zip(asked, went, strict=True):
                dues = lines_due[row.id]
                if opened_now is None:
                    expiring.append((dues[0], row))
                    for due in dues[1:]:
                        results[(row.id, due.index)] = Fired(
                            row.id, due.index, "expired", "with another line", due.pool, row.tenant
                        )
                    continue
                for due, step in zip(sorted(dues, key=lambda d: d.line or 0), opened_now, strict=True):
                    results[(row.id, due.index)] = Fired(
                        row.id, due.index, "escalated", step.pool, due.pool, row.tenant
                    )
                    unit.count(lambda m, tenant=row.tenant: m.escalations.labels(tenant).inc())  # type: ignore[misc]
        outcomes = await self.transitions.expire_many(unit, [(row, due.pool) for due, row in expiring])
        for (due, row), outcome in zip(expiring, outcomes, strict=True):
            results[(row.id, due.index)] = Fired(row.id, due.index, "expired", outcome.value, due.pool, row.tenant)
        breached = [(due, row) for due, row in live] + [(d, rows[r]) for r, dues in lines_due.items() for d in dues]
        for due, row in breached:
            if (due.line is None and due.index == 0) or (row.id, due.index) in first_of_line:
                # The first stage ran out of time: its pool missed its service level.
                unit.count(lambda m, t=row.tenant, p=due.pool: m.sla_breaches.labels(t, p).inc())  # type: ignore[misc]
        return [results[(c.request_id, c.index)] for c in claimed]

    async def _fire_one_by_one(self, size: int) -> list[Fired]:
        """The due deadlines, each fired in its own unit of work (after a batch failed)."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            due_stages = await tx.stages.due_stages(self.clock.now(), limit=size)
        fired: list[Fired] = []
        for due in due_stages:
            with log_context(tenant=due.tenant, request_id=due.request_id):
                try:
                    result = await self.fire(due)
                except Exception:
                    log.exception("deadline of stage %s could not fire; the next sweep retries", due.index)
                    continue
            if result is not None:
                fired.append(result)
        return fired

    async def next_wakeup(self) -> datetime | None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await tx.stages.next_deadline()

    async def fire(self, due: DueStage) -> Fired | None:
        """Fire one stage's deadline; None if another replica (or a decision) got there first."""
        async with self.transitions.unit(self.clock.now()) as unit:
            tx = unit.tx
            # The request's row before its stage's, as votes and edits lock them: no deadlock with either.
            row = await tx.requests.get_for_update(due.tenant, due.request_id)
            if not await tx.stages.fire_stage(due.request_id, due.index, unit.now):
                return None
            stages = await tx.stages.stages(row.id)
            fired_stage = stage_at(stages, due.index)
            line = fired_stage.line if fired_stage else None
            if row.status is not Status.PENDING or (line is None and row.stage != due.index):
                return Fired(row.id, due.index, "skipped", f"request is {row.status.value} at stage {row.stage}")
            pool = fired_stage.pool if fired_stage else ""
            if line is not None:
                went = (await self.transitions.escalate_lines(unit, [(row, stages, [line])]))[0]
                moved = went[0] if went else None
            else:
                moved = await self.transitions.escalate(unit, row, stages)
            if moved is not None:
                result = Fired(row.id, due.index, "escalated", moved.pool, pool)
                unit.count(lambda m: m.escalations.labels(row.tenant).inc())
            else:
                outcome = await self.transitions.expire(unit, row, pool=pool)
                result = Fired(row.id, due.index, "expired", outcome.value, pool)
            if due.index == 0 or (line is not None and min(s.index for s in stages if s.line == line) == due.index):
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
            row = await tx.requests.get_for_update(tenant, request_id)  # request, then stage (see fire)
            if not await tx.stages.fire_stage(request_id, index, unit.now):
                return None
            stages = await tx.stages.stages(row.id)
            stage = stage_at(stages, index)
            line = stage.line if stage else None
            if row.status is not Status.PENDING or (line is None and row.stage != index):
                return None
            where = f"<#{stage.channel}>" if stage and stage.channel else "its channel"
            pool = stage.pool if stage else "?"
            await tx.audit.append(
                tenant, "request.stage_unpostable", now=unit.now, request_id=row.id,
                payload={"stage": index, "pool": pool, "error": why},
            )  # fmt: skip
            note = f":warning: Could not post in {where} ({why})"
            if line is not None:
                went = (await self.transitions.escalate_lines(unit, [(row, stages, [line])], note=note))[0]
                moved = went[0] if went else None
            else:
                moved = await self.transitions.escalate(unit, row, stages, note=note)
            if moved is not None:
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

    async def _remind_batch(self, size: int) -> int:
        """Claim up to ``size`` due reminders and send them in one unit of work; how many were claimed.

        As with deadlines, a failure rolls the batch back and its reminders go one per unit of work.
        """
        claimed: list[ClaimedStage] = []
        try:
            async with self.transitions.unit(self.clock.now()) as unit:
                claimed = await unit.tx.stages.claim_due_reminders(unit.now, limit=size)
                if claimed:
                    await self._send_reminders(unit, claimed)
        except Exception:
            if not claimed:
                raise
            log.exception("sending %s reminders together failed; sending them one at a time", len(claimed))
            async with uow(self.sessionmaker, read_only=True) as tx:
                due_reminders = await tx.stages.due_reminders(self.clock.now(), limit=size)
            for due in due_reminders:
                with log_context(tenant=due.tenant, request_id=due.request_id):
                    try:
                        await self.remind(due)
                    except Exception:
                        log.exception("reminder of stage %s could not be sent; the next sweep retries", due.index)
        return len(claimed)

    async def _send_reminders(self, unit: Unit, claimed: Sequence[ClaimedStage]) -> None:
        tx, now = unit.tx, unit.now
        ids = [c.request_id for c in claimed]
        rows = await tx.requests.by_ids(ids)
        voted = await tx.votes.voters_of(ids)
        pending = [(due, rows[due.request_id]) for due in claimed if rows[due.request_id].status is Status.PENDING]
        pools = {t: await tx.pools.views(t) for t in sorted({row.tenant for _, row in pending})}
        effects: list[NewItem] = []
        events: list[NewEvent] = []
        for due, row in pending:
            pool = pools[row.tenant].get(due.pool)
            members = pool.eligible(exclude=row.on_behalf_of) - voted[row.id] if pool else set()
            text = _reminder(due.deadline_at, members, question=row.kind == QUESTION)
            effects.append(new_item(row.tenant, Effect.THREAD, Thread(request_id=row.id, text=text)))
            events.append(NewEvent(row.tenant, "request.reminded", now, {"stage": due.index}, row.id))
        await tx.outbox.enqueue_many(effects, now=now)
        await tx.audit.append_many(events)

    async def remind(self, due: DueStage) -> bool:
        """Post the stage's reminder in the card's thread, once, and never after a decision."""
        async with self.transitions.unit(self.clock.now()) as unit:
            tx, now = unit.tx, unit.now
            if not await tx.stages.mark_reminded(due.request_id, due.index, now):
                return False
            row = await tx.requests.get(due.tenant, due.request_id)
            if row is None or row.status is not Status.PENDING:
                return False
            stage = stage_at(await tx.stages.stages(row.id), due.index)
            pools = await tx.pools.views(row.tenant)
            voted = {v.user for v in await tx.votes.cast_votes(row.id)}
            members = (
                pools[stage.pool].eligible(exclude=row.on_behalf_of) - voted if stage and stage.pool in pools else set()
            )
            text = _reminder(due.deadline_at, members, question=row.kind == QUESTION)
            await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=text), now)
            await tx.audit.append(
                row.tenant, "request.reminded", now=now, request_id=row.id, payload={"stage": due.index}
            )
        return True


def _reminder(deadline_at: datetime, members: AbstractSet[str], *, question: bool = False) -> str:
    """A stage's reminder: when its deadline comes, and who of its pool has not voted (or answered) yet."""
    mentions = " ".join(f"<@{u}>" for u in sorted(members))
    when = f"<!date^{int(deadline_at.timestamp())}^{{time}}|{deadline_at:%H:%M UTC}>"
    what = "this question needs an answer" if question else "this request needs a decision"
    return f":alarm_clock: Reminder: {what} before {when}. {mentions}".rstrip()
