"""Recording requests: a new one, many at once (group commit), or an idempotent replay of an earlier one.

A request with an idempotency key is recorded once per tenant: a replay with the same body gets the
earlier request back, one with another body is refused. Part of :class:`store.requests.RequestRepository`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from policy.sensitive import canonical_sha256, params_sha256
from policy.types import Mode, Risk, Status
from store._sql import IdFactory, rowcount, table_of, upsert_insert, utc
from store.errors import BatchConflict, IdempotencyConflict
from store.models import Request


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


class RequestRecording:
    """How :class:`store.requests.RequestRepository` records requests."""

    _session: AsyncSession
    _new_id: IdFactory

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
        return RequestRecording._replay(existing, body_sha256)

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
