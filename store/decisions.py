"""Deciding requests and moving them from stage to stage, each change a compare-and-set.

:meth:`RequestTransitions.transition` updates the row only if it still has the expected status *and*
version, and tells the caller whether it won. Part of :class:`store.requests.RequestRepository`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from policy.types import Status
from store._sql import rowcount
from store.models import Request

# Columns a transition may set besides status/version/updated_at.
TRANSITION_FIELDS = frozenset(
    {"stage", "outcome", "decided_by", "decision_reason", "decided_at", "mode", "approvals_required"}
)


@dataclass(frozen=True)
class Decision:
    """A decision to record (see :meth:`RequestRepository.decide_many`)."""

    request_id: str
    expected_version: int
    outcome: Status
    by: str | None = None
    reason: str | None = None
    status: Status | None = None  # when it differs from ``outcome`` (expired, approved by on_timeout)


class RequestTransitions:
    """How :class:`store.requests.RequestRepository` changes a request's state."""

    _session: AsyncSession

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


def _written(row: Request, **values: Any) -> None:
    """Set what an UPDATE just wrote on the loaded row, as loaded state (not a change to flush again)."""
    for name, value in values.items():
        set_committed_value(row, name, value)


def _versions_are(expected: Sequence[tuple[str, int]]) -> tuple[Any, Any]:
    """The compare-and-set of many requests: each (id, version) as given. The ids alone are listed
    too, so the database finds the rows by key (SQLite scans the table for a row-value IN)."""
    return Request.id.in_([i for i, _ in expected]), tuple_(Request.id, Request.version).in_(list(expected))
