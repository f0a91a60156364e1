"""Requests: recorded, looked up, and moved from state to state.

Status changes are compare-and-set: :meth:`RequestRepository.transition` updates the row
only if it still has the expected status *and* version, and tells the caller whether it
won. Recording lives in :mod:`store.recording`, state changes in :mod:`store.decisions` (both
part of the repository); stages in :mod:`store.stages`, cards in :mod:`store.cards`, votes in
:mod:`store.votes`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Mode, Status
from store._sql import IdFactory
from store.decisions import RequestTransitions
from store.errors import NotFound
from store.models import Request, RequestStage
from store.recording import RequestRecording


class RequestRepository(RequestRecording, RequestTransitions):
    """Requests, within a unit of work."""

    def __init__(self, session: AsyncSession, new_id: IdFactory) -> None:
        self._session = session
        self._new_id = new_id

    # -- reading ----------------------------------------------------------------------------

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


def _found(request: Request | None, tenant: str, request_id: str) -> Request:
    if request is None:
        raise NotFound(f"no request {request_id!r} for tenant {tenant!r}")
    return request
