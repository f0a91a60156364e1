"""Requests: recorded, looked up, and moved from state to state.

Status changes are compare-and-set: :meth:`RequestRepository.transition` updates the row
only if it still has the expected status *and* version, and tells the caller whether it
won. Stages live in :mod:`store.stages`, cards in :mod:`store.cards`, votes in :mod:`store.votes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from policy.sensitive import canonical_sha256, params_sha256
from policy.types import Mode, Risk, Status
from store._sql import IdFactory, rowcount, table_of, upsert_insert, utc
from store.errors import BatchConflict, IdempotencyConflict, NotFound
from store.models import Request, RequestStage

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
    stage: int = 0  # a cross-pool quorum opens a stage per line at once: the last one's index
    kind: str = "request"  # or "question" (bot.service.questions)
    policy_version: int | None = None  # the tenant's policy version that decided it (store.policyversions)

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
class Decision:
    """A decision to record (see :meth:`RequestRepository.decide_many`)."""

    request_id: str
    expected_version: int
    outcome: Status
    by: str | None = None
    reason: str | None = None
    status: Status | None = None  # when it differs from ``outcome`` (expired, approved by on_timeout)


class RequestRepository:
    """Requests, within a unit of work."""

    def __init__(self, session: AsyncSession, new_id: IdFactory) -> None:
        self._session = session
        self._new_id = new_id

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
        return Request(**{**values, "created_at": utc(now), "updated_at": utc(now)}), True

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
        return [Request(**{**values, "created_at": utc(now), "updated_at": utc(now)}) for values in rows]

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
            "kind": new.kind,
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
            "stage": new.stage,
            "outcome": new.outcome if new.outcome is not None else (new.status if new.status.is_final else None),
            "decided_by": new.decided_by,
            "decision_reason": new.decision_reason,
            "decided_at": now if new.status.is_final else None,
            "policy_version": new.policy_version,
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

    async def decide_many(
        self, decisions: Sequence[Decision], *, now: datetime, rows: Mapping[str, Request] | None = None
    ) -> int:
        """:meth:`decide` many pending requests: one statement per distinct decision, whatever the count.

        ``rows``: the caller's loaded (locked) rows of these requests; when every decision is written, they
        are brought up to date in memory, so the caller need not read them back.

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
        if rows is not None and decided == len(decisions):
            for d in decisions:
                if (row := rows.get(d.request_id)) is not None and row.version == d.expected_version:
                    _written(
                        row, status=d.status or d.outcome, outcome=d.outcome, decided_by=d.by,
                        decision_reason=d.reason, decided_at=now, version=d.expected_version + 1, updated_at=now,
                    )  # fmt: skip
        return decided

    async def advance_many(self, expected: Sequence[tuple[str, int]], *, now: datetime, steps: int = 1) -> int:
        """Move pending requests to their next stage (``steps`` on: a quorum moving several lines at once),
        each compare-and-set on its (id, version).

        Returns:
            How many moved (fewer than given: one of them changed since the caller read it).
        """
        if not expected:
            return 0
        result = await self._session.execute(
            update(Request)
            .where(Request.status == Status.PENDING, *_versions_are(expected))
            .values(stage=Request.stage + steps, version=Request.version + 1, updated_at=now)
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

    async def statuses_of(
        self, request_ids: Sequence[str], *, kind: str | None = None
    ) -> dict[str, tuple[str, Status]]:
        """Each request's (tenant, status) alone, by id (any tenant; the caller checks it); with ``kind``,
        only rows of that kind ('request' or 'question')."""
        ids = sorted(set(request_ids))
        query = select(Request.id, Request.tenant, Request.status).where(Request.id.in_(ids))
        if kind is not None:
            query = query.where(Request.kind == kind)
        return {row.id: (row.tenant, row.status) for row in (await self._session.execute(query)).all()}

    async def decided_among(self, request_ids: Sequence[str]) -> set[str]:
        """Which of ``request_ids`` are no longer pending (a query per 500 ids)."""
        ids, decided = sorted(set(request_ids)), set[str]()
        for at in range(0, len(ids), 500):
            query = select(Request.id).where(Request.id.in_(ids[at : at + 500]), Request.status != Status.PENDING)
            decided.update((await self._session.scalars(query)).all())
        return decided

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


def _written(row: Request, **values: Any) -> None:
    """Set what an UPDATE just wrote on the loaded row, as loaded state (not a change to flush again)."""
    for name, value in values.items():
        set_committed_value(row, name, value)


def _found(request: Request | None, tenant: str, request_id: str) -> Request:
    if request is None:
        raise NotFound(f"no request {request_id!r} for tenant {tenant!r}")
    return request


def _versions_are(expected: Sequence[tuple[str, int]]) -> tuple[Any, Any]:
    """The compare-and-set of many requests: each (id, version) as given. The ids alone are listed
    too, so the database finds the rows by key (SQLite scans the table for a row-value IN)."""
    return Request.id.in_([i for i, _ in expected]), tuple_(Request.id, Request.version).in_(list(expected))
