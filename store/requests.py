"""Requests, their stages, cards and votes.

Status changes are compare-and-set: :meth:`RequestRepository.transition` updates the row
only if it still has the expected status *and* version, and tells the caller whether it
won. Stage deadlines fire with a conditional update on ``fired_at IS NULL``, so two
replicas, a restart or a late click never fire one twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from policy.sensitive import canonical_sha256, params_sha256
from policy.types import CastVote, Choice, Mode, Risk, Status
from store._sql import IdFactory, dialect_name, rowcount, table_of, upsert_insert
from store.errors import BatchConflict, DuplicateVote, IdempotencyConflict, NotFound
from store.models import Card, Request, RequestStage, Vote

# Columns a transition may set besides status/version/updated_at.
TRANSITION_FIELDS = frozenset(
    {"stage", "outcome", "decided_by", "decision_reason", "decided_at", "mode", "approvals_required"}
)


@dataclass(frozen=True)
class NewRequest:
    """What the service knows about a request when it records it.

    ``body_sha256`` is the digest of the agent's request body, compared on idempotent
    replays; when omitted it is computed from action, params, context and callback URL.
    """

    tenant: str
    action: str
    params: Mapping[str, Any]
    status: Status
    mode: Mode
    id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    sensitive: Sequence[str] = ()
    approvals_required: int = 1
    on_behalf_of: str | None = None
    workflow_id: str | None = None
    idempotency_key: str | None = None
    body_sha256: str | None = None
    callback_url: str | None = None
    undo_operation: str | None = None
    risk: Risk | None = None
    outcome: Status | None = None
    decided_by: str | None = None
    decision_reason: str | None = None

    def body_digest(self) -> str:
        if self.body_sha256 is not None:
            return self.body_sha256
        body = {
            "action": self.action,
            "params": self.params,
            "context": self.context,
            "callback_url": self.callback_url,
        }
        return canonical_sha256(body)


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


@dataclass(frozen=True)
class Decision:
    """A decision to record (see :meth:`RequestRepository.decide_many`)."""

    request_id: str
    expected_version: int
    outcome: Status
    by: str | None = None
    reason: str | None = None
    status: Status | None = None  # when it differs from ``outcome`` (expired, approved by on_timeout)


class RequestRepository:
    """Requests and everything hanging off them, within a unit of work."""

    def __init__(self, session: AsyncSession, new_id: IdFactory) -> None:
        self._session = session
        self._new_id = new_id
        # The earliest deadline or reminder of the stages this unit of work opened, so the
        # scheduler can tell whether its next wake-up is still early enough without a query.
        self.earliest_opened: datetime | None = None

    # -- requests ---------------------------------------------------------------------

    async def create(self, new: NewRequest, *, now: datetime) -> tuple[Request, bool]:
        """Record a request, or return the earlier one with the same idempotency key.

        Args:
            new: the request.
            now: creation time (also ``decided_at`` when created already decided).

        Returns:
            ``(request, created)``; ``created`` is False for an idempotent replay.

        Raises:
            IdempotencyConflict: the key is known for this tenant with a different body.
        """
        body = new.body_digest()
        if new.idempotency_key is not None:
            existing = await self._by_idempotency_key(new.tenant, new.idempotency_key)
            if existing is not None:
                return self._replay(existing, body), False
        values = self._values(new, body, now)
        # The table, not the entity, and the values as parameters: a Core statement whose cache
        # key does not depend on the values costs half as much to execute as an ORM insert.
        stmt = upsert_insert(self._session, table_of(Request))
        if new.idempotency_key is not None:
            # Two replays racing: the loser's insert does nothing and it reads the winner's row.
            stmt = stmt.on_conflict_do_nothing(index_elements=["tenant", "idempotency_key"])
        result = await self._session.execute(stmt, values)
        if not rowcount(result):
            assert new.idempotency_key is not None
            existing = await self._by_idempotency_key(new.tenant, new.idempotency_key)
            assert existing is not None
            return self._replay(existing, body), False
        # What was written is what a read would return: no second round trip on the hot path.
        return Request(**{**values, "created_at": _utc(now), "updated_at": _utc(now)}), True

    async def create_many(self, news: Sequence[NewRequest], *, now: datetime) -> list[Request]:
        """Record new requests in one statement (group commit), none of them a replay.

        The caller has already looked their idempotency keys up (:meth:`by_idempotency_keys`).

        Raises:
            BatchConflict: a key was taken meanwhile (by another replica): nothing was written,
                and the transaction must be rolled back.
        """
        rows = [self._values(new, new.body_digest(), now) for new in news]
        if rows:
            try:
                await self._session.execute(insert(table_of(Request)), rows)
            except IntegrityError as exc:
                raise BatchConflict(str(exc.orig)) from exc
        return [Request(**{**values, "created_at": _utc(now), "updated_at": _utc(now)}) for values in rows]

    async def by_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> dict[str, Request]:
        """The tenant's requests recorded under any of ``keys``, by key (one query)."""
        if not keys:
            return {}
        query = select(Request).where(Request.tenant == tenant, Request.idempotency_key.in_(keys))
        return {r.idempotency_key: r for r in (await self._session.scalars(query)).all() if r.idempotency_key}

    @staticmethod
    def replay(existing: Request, body_sha256: str) -> Request:
        """The earlier request an idempotency key names, if the body is the same.

        Raises:
            IdempotencyConflict: the key was used with another body.
        """
        return RequestRepository._replay(existing, body_sha256)

    def _values(self, new: NewRequest, body: str, now: datetime) -> dict[str, Any]:
        return {
            "id": new.id or self._new_id(),
            "tenant": new.tenant,
            "action": new.action,
            "params": dict(new.params),
            "params_sha256": params_sha256(new.action, new.params),
            "context": dict(new.context),
            "sensitive": list(new.sensitive),
            "status": new.status,
            "mode": new.mode,
            "approvals_required": new.approvals_required,
            "on_behalf_of": new.on_behalf_of,
            "workflow_id": new.workflow_id,
            "idempotency_key": new.idempotency_key,
            "body_sha256": body,
            "callback_url": new.callback_url,
            "undo_operation": new.undo_operation,
            "risk": new.risk,
            "stage": 0,
            "outcome": new.outcome if new.outcome is not None else (new.status if new.status.is_final else None),
            "decided_by": new.decided_by,
            "decision_reason": new.decision_reason,
            "decided_at": now if new.status.is_final else None,
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }

    async def get(self, tenant: str, request_id: str) -> Request | None:
        """The tenant's request, fresh from the database; None if absent or another tenant's."""
        return await self._fetch(tenant, request_id, lock=False)

    async def get_or_raise(self, tenant: str, request_id: str) -> Request:
        """The tenant's request.

        Raises:
            NotFound: absent, or it belongs to another tenant.
        """
        return _found(await self._fetch(tenant, request_id, lock=False), tenant, request_id)

    async def get_for_update(self, tenant: str, request_id: str) -> Request:
        """The request, row-locked until the unit of work ends (PostgreSQL ``FOR UPDATE``;
        on SQLite the write transaction already excludes other writers).

        Lock before checking a click against the request's state, so concurrent clicks on
        one request are judged one after another; :meth:`transition` stays the backstop.

        Raises:
            NotFound: absent, or it belongs to another tenant.
        """
        return _found(await self._fetch(tenant, request_id, lock=True), tenant, request_id)

    async def transition(
        self,
        request_id: str,
        *,
        expected_status: Status,
        expected_version: int,
        new_status: Status,
        now: datetime,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: change the request only if it is still as the caller saw it.

        Runs ``UPDATE request SET status=:new, version=version+1, ... WHERE id=:id AND
        status=:expected AND version=:v``. Also used to move a pending request to its next
        stage (``new_status=PENDING, stage=k+1``).

        Args:
            request_id: the request.
            expected_status: status the caller read.
            expected_version: version the caller read.
            new_status: status to set.
            now: stored as ``updated_at``.
            **fields: other columns to set, among ``TRANSITION_FIELDS``.

        Returns:
            True if this call changed the row (it won); False if someone else did first.
        """
        unknown = set(fields) - TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition cannot set {sorted(unknown)}")
        result = await self._session.execute(
            update(Request)
            .where(
                Request.id == request_id,
                Request.status == expected_status,
                Request.version == expected_version,
            )
            .values(status=new_status, version=Request.version + 1, updated_at=now, **fields)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def decide(
        self,
        request_id: str,
        *,
        expected_version: int,
        outcome: Status,
        now: datetime,
        by: str | None = None,
        reason: str | None = None,
        status: Status | None = None,
    ) -> bool:
        """Decide a pending request (compare-and-set on ``pending`` and ``expected_version``).

        Args:
            request_id: the request.
            expected_version: version the caller read.
            outcome: the decision (approved, rejected, expired, cancelled).
            now: decision time.
            by: who decided (a Slack user id; None for the clock or the agent).
            reason: why (required by the service for rejections).
            status: status to set when it differs from ``outcome`` (an ``expired`` status
                whose ``on_timeout`` outcome is ``approved``).

        Returns:
            True if this call decided the request; False if it was already decided or changed.
        """
        return await self.transition(
            request_id,
            expected_status=Status.PENDING,
            expected_version=expected_version,
            new_status=status or outcome,
            now=now,
            outcome=outcome,
            decided_by=by,
            decision_reason=reason,
            decided_at=now,
        )

    async def decide_many(self, decisions: Sequence[Decision], *, now: datetime) -> int:
        """:meth:`decide` many pending requests: one statement per distinct decision, whatever the count.

        Returns:
            How many were decided (fewer than given: one was already decided, or its version moved).
        """
        groups: dict[tuple[Status, Status, str | None, str | None], list[tuple[str, int]]] = {}
        for d in decisions:
            key = (d.status or d.outcome, d.outcome, d.by, d.reason)
            groups.setdefault(key, []).append((d.request_id, d.expected_version))
        decided = 0
        for (status, outcome, by, reason), expected in groups.items():
            result = await self._session.execute(
                update(Request)
                .where(Request.status == Status.PENDING, *_versions_are(expected))
                .values(
                    status=status, outcome=outcome, decided_by=by, decision_reason=reason, decided_at=now,
                    version=Request.version + 1, updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            decided += rowcount(result)
        return decided

    async def advance_many(self, expected: Sequence[tuple[str, int]], *, now: datetime) -> int:
        """Move pending requests to their next stage, each compare-and-set on its (id, version).

        Returns:
            How many moved (fewer than given: one of them changed since the caller read it).
        """
        if not expected:
            return 0
        result = await self._session.execute(
            update(Request)
            .where(Request.status == Status.PENDING, *_versions_are(expected))
            .values(stage=Request.stage + 1, version=Request.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    async def lock_many(self, request_ids: Sequence[str]) -> dict[str, Request]:
        """Requests by id (any tenant: the deadline sweep serves them all), row-locked until the
        unit of work ends, like :meth:`get_for_update`; locked in id order, so two callers
        locking overlapping sets wait for each other instead of deadlocking."""
        if not request_ids:
            return {}
        query = (
            select(Request)
            .where(Request.id.in_(sorted(set(request_ids))))
            .order_by(Request.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {r.id: r for r in (await self._session.scalars(query)).all()}

    async def by_ids(self, request_ids: Sequence[str]) -> dict[str, Request]:
        """Requests by id, any tenant, unlocked."""
        if not request_ids:
            return {}
        query = select(Request).where(Request.id.in_(sorted(set(request_ids))))
        result = await self._session.scalars(query.execution_options(populate_existing=True))
        return {r.id: r for r in result.all()}

    async def list_pending(self, tenant: str, *, pool: str | None = None, limit: int = 100) -> Sequence[Request]:
        """The tenant's pending requests, oldest first; with ``pool``, only those whose
        current stage is that pool."""
        query = select(Request).where(Request.tenant == tenant, Request.status == Status.PENDING)
        if pool is not None:
            query = query.join(
                RequestStage, (RequestStage.request_id == Request.id) & (RequestStage.index == Request.stage)
            ).where(RequestStage.pool == pool)
        result = await self._session.scalars(query.order_by(Request.created_at, Request.id).limit(limit))
        return result.all()

    async def count_pending(self, tenant: str, *, workflow_id: str, mode: Mode | None = Mode.ASYNC) -> int:
        """How many undecided requests a workflow has (``max_pending``; async only by default)."""
        query = select(func.count()).where(
            Request.tenant == tenant, Request.workflow_id == workflow_id, Request.status == Status.PENDING
        )
        if mode is not None:
            query = query.where(Request.mode == mode)
        return int((await self._session.execute(query)).scalar_one())

    async def pending_by_workflow(self, tenant: str, workflows: Sequence[str]) -> dict[str, int]:
        """:meth:`count_pending` (async) of several workflows in one query."""
        if not workflows:
            return {}
        query = (
            select(Request.workflow_id, func.count())
            .where(
                Request.tenant == tenant, Request.workflow_id.in_(workflows),
                Request.status == Status.PENDING, Request.mode == Mode.ASYNC,
            )
            .group_by(Request.workflow_id)
        )  # fmt: skip
        return {str(w): int(n) for w, n in (await self._session.execute(query)).all()}

    # -- stages -------------------------------------------------------------------------

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
        }
        # A Core insert: the ORM flush costs more than the statement on this hot path.
        await self._session.execute(insert(table_of(RequestStage)), values)
        due = min(deadline_at, remind_at) if remind_at else deadline_at
        self.earliest_opened = min(self.earliest_opened, due) if self.earliest_opened else due
        times = {k: _utc(v) for k, v in values.items() if isinstance(v, datetime)}
        return RequestStage(**{**values, **times, "reminded_at": None, "fired_at": None})

    async def open_stages(self, stages: Sequence[NewStage], *, now: datetime) -> list[RequestStage]:
        """Record first stages of many requests in one statement (group commit)."""
        rows: list[dict[str, Any]] = [
            {
                "request_id": s.request_id, "index": s.index, "pool": s.pool, "channel": s.channel,
                "opened_at": now, "deadline_at": s.deadline_at, "remind_at": s.remind_at, "fired_at": s.fired_at,
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
                **{**r, **{k: _utc(v) for k, v in r.items() if isinstance(v, datetime)}}, reminded_at=None
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

    async def reached_pools(self, request_ids: Sequence[str]) -> dict[str, list[str]]:
        """The pools of each request's opened stages, in order (one query; what escalation needs)."""
        found: dict[str, list[str]] = {r: [] for r in request_ids}
        if request_ids:
            query = (
                select(RequestStage.request_id, RequestStage.pool)
                .where(RequestStage.request_id.in_(sorted(set(request_ids))))
                .order_by(RequestStage.request_id, RequestStage.index)
            )
            for request_id, pool in (await self._session.execute(query)).all():
                found[request_id].append(pool)
        return found

    async def claim_due_stages(self, now: datetime, *, limit: int) -> list[ClaimedStage]:
        """Claim up to ``limit`` due deadlines (those :meth:`due_stages` lists), earliest first, in
        one statement: each is claimed by exactly one caller, as with :meth:`fire_stage`.

        On PostgreSQL the candidates are locked with ``SKIP LOCKED``, so replicas claiming at
        the same moment split the due work instead of queueing behind one another; a row another
        replica claimed and committed meanwhile is re-checked (``fired_at IS NULL``) and left
        out. SQLite has one writer at a time, so there is nobody to skip.
        """
        due = self._current_stages().where(RequestStage.deadline_at <= now).order_by(RequestStage.deadline_at)
        return await self._claim(due.limit(limit), fired_at=now)

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
            .returning(stage.request_id, stage.index, stage.pool, stage.deadline_at)
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
                Request.stage == RequestStage.index,
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
                Request.stage == RequestStage.index,
                RequestStage.fired_at.is_(None),
            )
        )

    # -- cards ----------------------------------------------------------------------------

    async def add_card(self, request_id: str, *, stage: int, channel: str, ts: str, now: datetime) -> Card:
        """Remember where a card was posted (``chat.postMessage`` channel and ts)."""
        card = Card(request_id=request_id, stage=stage, channel=channel, ts=ts, created_at=now)
        self._session.add(card)
        await self._session.flush()
        return card

    async def cards(self, request_id: str) -> Sequence[Card]:
        """The request's cards, by stage."""
        result = await self._session.scalars(
            select(Card).where(Card.request_id == request_id).order_by(Card.stage, Card.id)
        )
        return result.all()

    # -- votes ----------------------------------------------------------------------------

    async def add_vote(
        self, request_id: str, user: str, choice: Choice, *, stage: int, now: datetime, reason: str | None = None
    ) -> Vote:
        """Count one vote. The transaction stays usable when the vote is a duplicate.

        Raises:
            DuplicateVote: the person already voted on this request.
        """
        result = await self._session.execute(
            upsert_insert(self._session, Vote)
            .values(request_id=request_id, user_id=user, choice=choice, reason=reason, stage=stage, at=now)
            .on_conflict_do_nothing(index_elements=["request_id", "user_id"])
            .returning(Vote.id)
        )
        vote_id = result.scalar_one_or_none()
        if vote_id is None:
            raise DuplicateVote(f"{user} already voted on {request_id}")
        vote = await self._session.get(Vote, vote_id)
        assert vote is not None
        return vote

    async def votes(self, request_id: str) -> Sequence[Vote]:
        """The request's votes, in the order they were cast."""
        result = await self._session.scalars(select(Vote).where(Vote.request_id == request_id).order_by(Vote.id))
        return result.all()

    async def cast_votes(self, request_id: str) -> list[CastVote]:
        """The request's votes as ``policy`` takes them (``admit``, ``tally``)."""
        return [CastVote(user=v.user_id, choice=v.choice, at=v.at) for v in await self.votes(request_id)]

    async def voters_of(self, request_ids: Sequence[str]) -> dict[str, set[str]]:
        """Who has voted on each of ``request_ids`` (one query)."""
        found: dict[str, set[str]] = {r: set() for r in request_ids}
        if request_ids:
            query = select(Vote.request_id, Vote.user_id).where(Vote.request_id.in_(sorted(set(request_ids))))
            for request_id, user in (await self._session.execute(query)).all():
                found[request_id].add(user)
        return found

    # -- helpers --------------------------------------------------------------------------

    async def _fetch(self, tenant: str, request_id: str, *, lock: bool) -> Request | None:
        query = select(Request).where(Request.id == request_id, Request.tenant == tenant)
        if lock:
            query = query.with_for_update()
        result = await self._session.scalars(query.execution_options(populate_existing=True))
        return result.one_or_none()

    async def _by_idempotency_key(self, tenant: str, key: str) -> Request | None:
        result = await self._session.scalars(
            select(Request)
            .where(Request.tenant == tenant, Request.idempotency_key == key)
            .execution_options(populate_existing=True)
        )
        return result.one_or_none()

    @staticmethod
    def _replay(existing: Request, body: str) -> Request:
        if existing.body_sha256 != body:
            raise IdempotencyConflict(
                f"idempotency key {existing.idempotency_key!r} was used with a different body (request {existing.id})"
            )
        return existing


def _found(request: Request | None, tenant: str, request_id: str) -> Request:
    if request is None:
        raise NotFound(f"no request {request_id!r} for tenant {tenant!r}")
    return request


def _versions_are(expected: Sequence[tuple[str, int]]) -> tuple[Any, Any]:
    """The compare-and-set of many requests: each (id, version) as given. The ids alone are listed
    too, so the database finds the rows by key (SQLite scans the table for a row-value IN)."""
    return Request.id.in_([i for i, _ in expected]), tuple_(Request.id, Request.version).in_(list(expected))


def _due(row: Any) -> DueStage:
    # Positional: ``Row.index`` is the tuple method, not the column.
    request_id, tenant, index, deadline_at, remind_at = row
    return DueStage(request_id, tenant, index, deadline_at, remind_at)


def _utc(at: datetime) -> datetime:
    """``at`` as the store hands it back (aware, UTC)."""
    return at.astimezone(UTC)
