"""Stages of a request: opened as it moves along its pool chain, their deadlines and reminders.

Deadlines fire with a conditional update on ``fired_at IS NULL`` (one stage at a time, or a
batch claimed in one statement, with ``SKIP LOCKED`` on PostgreSQL), so two replicas, a restart
or a late click never fire one twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Status
from store._sql import dialect_name, rowcount, table_of, utc
from store.models import Request, RequestStage


@dataclass(frozen=True)
class NewStage:
    """A stage to open (see :meth:`RequestRepository.open_stages`)."""

    request_id: str
    index: int
    pool: str
    channel: str | None
    deadline_at: datetime
    remind_at: datetime | None = None
    fired_at: datetime | None = None  # a sampled request's stage: nothing to fire
    line: int | None = None  # a cross-pool quorum's line (see RequestStage.line)
    approvals: int | None = None  # that line's approvals


@dataclass(frozen=True)
class DueStage:
    """A stage whose deadline (or reminder) has come."""

    request_id: str
    tenant: str
    index: int
    deadline_at: datetime
    remind_at: datetime | None


@dataclass(frozen=True)
class ClaimedStage:
    """A stage whose deadline (or reminder) this unit of work claimed: nobody else will fire it."""

    request_id: str
    index: int
    pool: str
    deadline_at: datetime
    line: int | None = None  # a cross-pool quorum's line: its deadline moves that line only


class StageRepository:
    """Stages, within a unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        # The earliest deadline or reminder of the stages this unit of work opened, so the
        # scheduler can tell whether its next wake-up is still early enough without a query.
        self.earliest_opened: datetime | None = None

    async def open_stage(
        self,
        request_id: str,
        index: int,
        *,
        pool: str,
        channel: str | None,
        now: datetime,
        deadline_at: datetime,
        remind_at: datetime | None = None,
    ) -> RequestStage:
        """Record that stage ``index`` opened. Move the request to it with :meth:`transition`."""
        values: dict[str, Any] = {
            "request_id": request_id,
            "index": index,
            "pool": pool,
            "channel": channel,
            "opened_at": now,
            "deadline_at": deadline_at,
            "remind_at": remind_at,
            "line": None,
            "approvals": None,
        }
        # A Core insert: the ORM flush costs more than the statement on this hot path.
        await self._session.execute(insert(table_of(RequestStage)), values)
        due = min(deadline_at, remind_at) if remind_at else deadline_at
        self.earliest_opened = min(self.earliest_opened, due) if self.earliest_opened else due
        times = {k: utc(v) for k, v in values.items() if isinstance(v, datetime)}
        return RequestStage(**{**values, **times, "reminded_at": None, "fired_at": None})

    async def open_stages(self, stages: Sequence[NewStage], *, now: datetime) -> list[RequestStage]:
        """Record first stages of many requests in one statement (group commit)."""
        rows: list[dict[str, Any]] = [
            {
                "request_id": s.request_id, "index": s.index, "pool": s.pool, "channel": s.channel,
                "opened_at": now, "deadline_at": s.deadline_at, "remind_at": s.remind_at, "fired_at": s.fired_at,
                "line": s.line, "approvals": s.approvals,
            }
            for s in stages
        ]  # fmt: skip
        if not rows:
            return []
        await self._session.execute(insert(table_of(RequestStage)), rows)
        for s in stages:
            if s.fired_at is not None:
                continue
            due = min(s.deadline_at, s.remind_at) if s.remind_at else s.deadline_at
            self.earliest_opened = min(self.earliest_opened, due) if self.earliest_opened else due
        return [
            RequestStage(
                **{**r, **{k: utc(v) for k, v in r.items() if isinstance(v, datetime)}}, reminded_at=None
            )
            for r in rows
        ]  # fmt: skip

    async def stages(self, request_id: str) -> Sequence[RequestStage]:
        """The request's opened stages, in order."""
        result = await self._session.scalars(
            select(RequestStage)
            .where(RequestStage.request_id == request_id)
            .order_by(RequestStage.index)
            .execution_options(populate_existing=True)
        )
        return result.all()

    async def stages_of(self, request_ids: Sequence[str]) -> dict[str, list[RequestStage]]:
        """Each of ``request_ids``' opened stages, in order (one query)."""
        found: dict[str, list[RequestStage]] = {r: [] for r in request_ids}
        if request_ids:
            query = (
                select(RequestStage)
                .where(RequestStage.request_id.in_(sorted(set(request_ids))))
                .order_by(RequestStage.request_id, RequestStage.index)
                .execution_options(populate_existing=True)
            )
            for stage in (await self._session.scalars(query)).all():
                found[stage.request_id].append(stage)
        return found

    async def reached_pools(self, request_ids: Sequence[str]) -> dict[str, list[str]]:
        """The pools of each request's opened stages, in order (one query; what escalation needs)."""
        found: dict[str, list[str]] = {r: [] for r in request_ids}
        if request_ids:
            query = (
                select(RequestStage.request_id, RequestStage.pool)
                # A route an edit replaced is not where the request escalates from (bot.service.edits).
                .where(RequestStage.request_id.in_(sorted(set(request_ids))), RequestStage.superseded_at.is_(None))
                .order_by(RequestStage.request_id, RequestStage.index)
            )
            for request_id, pool in (await self._session.execute(query)).all():
                found[request_id].append(pool)
        return found

    async def claim_due_stages(self, now: datetime, *, limit: int) -> list[ClaimedStage]:
        """Claim up to ``limit`` due deadlines (those :meth:`due_stages` lists), earliest first, in
        one statement: each is claimed by exactly one caller, as with :meth:`fire_stage`.

        On PostgreSQL the candidates' *requests* are locked as they are picked, with ``SKIP LOCKED``,
        and only then their stages claimed: request row, then stage rows, the order a vote, an edit
        or a single firing takes them in, so a batch never deadlocks with one of those (a request
        being voted on right now is left for the next sweep). Replicas claiming at the same moment
        split the due work instead of queueing behind one another; a stage another replica claimed
        and committed meanwhile is re-checked (``fired_at IS NULL``) and left out. The request locks
        are held until the unit of work ends. SQLite has one writer at a time: nobody to skip.
        """
        due = self._current_stages().where(RequestStage.deadline_at <= now).order_by(RequestStage.deadline_at)
        if dialect_name(self._session) != "postgresql":
            return await self._claim(due.limit(limit), fired_at=now)
        stage = RequestStage
        # The LIMIT counts only what could be locked, so a second replica gets the next candidates.
        keys = due.with_only_columns(stage.request_id, stage.index).limit(limit)
        picked = keys.with_for_update(of=Request, skip_locked=True).cte("due").prefix_with("MATERIALIZED")
        stmt = (
            update(stage)
            .where(stage.request_id == picked.c.request_id, stage.index == picked.c.index, stage.fired_at.is_(None))
            .values(fired_at=now)
            .returning(stage.request_id, stage.index, stage.pool, stage.deadline_at, stage.line)
            .execution_options(synchronize_session=False)
        )
        claimed = [ClaimedStage(*row) for row in (await self._session.execute(stmt)).all()]
        return sorted(claimed, key=lambda c: (c.deadline_at, c.request_id))

    async def claim_due_reminders(self, now: datetime, *, limit: int) -> list[ClaimedStage]:
        """Claim up to ``limit`` due reminders (those :meth:`due_reminders` lists) in one statement,
        like :meth:`claim_due_stages`; a stage whose deadline already fired is not reminded."""
        due = self._unsent_reminders().where(RequestStage.remind_at <= now).order_by(RequestStage.remind_at)
        return await self._claim(due.limit(limit), reminded_at=now)

    async def _claim(self, due: Any, **values: datetime) -> list[ClaimedStage]:
        keys = due.with_only_columns(RequestStage.request_id, RequestStage.index)
        stage = RequestStage
        unclaimed = [stage.fired_at.is_(None), *(getattr(stage, column).is_(None) for column in values)]
        if dialect_name(self._session) == "postgresql":
            # Materialized, so the candidates are picked (and locked) once: as a plain IN (...) the
            # planner may re-run the subquery per row, and the LIMIT no longer bounds the claim.
            picked = keys.with_for_update(of=stage, skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            stmt = update(stage).where(stage.request_id == picked.c.request_id, stage.index == picked.c.index)
        else:
            stmt = update(stage).where(tuple_(stage.request_id, stage.index).in_(keys))
        stmt = (
            stmt.where(*unclaimed)
            .values(**values)
            .returning(stage.request_id, stage.index, stage.pool, stage.deadline_at, stage.line)
            .execution_options(synchronize_session=False)
        )
        claimed = [ClaimedStage(*row) for row in (await self._session.execute(stmt)).all()]
        # RETURNING follows no ORDER BY: earliest deadline first, as the sweep fires them.
        return sorted(claimed, key=lambda c: (c.deadline_at, c.request_id))

    async def fire_stage(self, request_id: str, index: int, now: datetime) -> bool:
        """Claim the deadline of one stage: True only for the one caller that fires it."""
        result = await self._session.execute(
            update(RequestStage)
            .where(
                RequestStage.request_id == request_id,
                RequestStage.index == index,
                RequestStage.fired_at.is_(None),
            )
            .values(fired_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def mark_reminded(self, request_id: str, index: int, now: datetime) -> bool:
        """Claim the reminder of one stage: True only for the one caller that sends it."""
        result = await self._session.execute(
            update(RequestStage)
            .where(
                RequestStage.request_id == request_id,
                RequestStage.index == index,
                RequestStage.reminded_at.is_(None),
                RequestStage.fired_at.is_(None),
            )
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def due_stages(self, now: datetime, *, limit: int = 100) -> list[DueStage]:
        """Current stages of pending requests whose deadline is at or before ``now``, unfired,
        earliest first (all tenants: the scheduler sweeps them all)."""
        query = self._current_stages().where(RequestStage.deadline_at <= now).order_by(RequestStage.deadline_at)
        return [_due(r) for r in (await self._session.execute(query.limit(limit))).all()]

    async def due_reminders(self, now: datetime, *, limit: int = 100) -> list[DueStage]:
        """Current stages of pending requests whose reminder time has come and was not sent."""
        query = self._unsent_reminders().where(RequestStage.remind_at <= now).order_by(RequestStage.remind_at)
        return [_due(r) for r in (await self._session.execute(query.limit(limit))).all()]

    async def next_deadline(self) -> datetime | None:
        """The earliest unfired deadline or unsent reminder of any pending request (when to wake)."""
        deadline = (
            await self._session.execute(self._current_stages().with_only_columns(func.min(RequestStage.deadline_at)))
        ).scalar_one()
        remind = (
            await self._session.execute(self._unsent_reminders().with_only_columns(func.min(RequestStage.remind_at)))
        ).scalar_one()
        # MIN() keeps the column's type, so both come back as aware UTC datetimes (or None).
        times = [t for t in (deadline, remind) if t is not None]
        return min(times) if times else None

    def _unsent_reminders(self) -> Any:
        """:meth:`_current_stages` with a reminder not yet sent.

        Reminder times have no index, so this scans the stages: the narrow table, each row
        filtered on its own columns before its request is looked up (joined the other way
        round, the planner scans the wide request table and looks up a stage for each).
        """
        current = (
            select(Request.id)
            .where(
                Request.id == RequestStage.request_id,
                Request.status == Status.PENDING,
                _is_current(),
            )
            .exists()
        )
        return select(
            RequestStage.request_id,
            select(Request.tenant).where(Request.id == RequestStage.request_id).scalar_subquery(),
            RequestStage.index,
            RequestStage.deadline_at,
            RequestStage.remind_at,
        ).where(
            RequestStage.remind_at.is_not(None),
            RequestStage.reminded_at.is_(None),
            RequestStage.fired_at.is_(None),
            current,
        )

    def _current_stages(self) -> Any:
        return (
            select(
                RequestStage.request_id,
                Request.tenant,
                RequestStage.index,
                RequestStage.deadline_at,
                RequestStage.remind_at,
            )
            .join(Request, Request.id == RequestStage.request_id)
            .where(
                Request.status == Status.PENDING,
                _is_current(),
                RequestStage.fired_at.is_(None),
            )
        )


def _is_current() -> Any:
    """The stage a pending request is at: its ``stage``, or for a cross-pool quorum each line's unfired stage
    (a line moves on only when its stage's deadline fires, so its unfired stage is its current one)."""
    return or_(Request.stage == RequestStage.index, RequestStage.line.is_not(None))


def _due(row: Any) -> DueStage:
    # Positional: ``Row.index`` is the tuple method, not the column.
    request_id, tenant, index, deadline_at, remind_at = row
    return DueStage(request_id, tenant, index, deadline_at, remind_at)
