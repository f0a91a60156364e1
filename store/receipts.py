"""Decision receipts: each tenant's signing keys and the receipts issued with them (docs/receipts.md).

The store keeps bytes and times; making keys and signing is the service's (``bot.service.receipts``).
A receipt needs the ``seq`` of its decision's audit event, known only once the sequencer has sealed
it: :meth:`ReceiptRepository.decision_seqs` says which requests are that far.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import upsert_insert
from store.audit import AuditLog
from store.models import AuditEvent, AuditUnsealed
from store.models.receipts import Receipt, ReceiptKey

# The audit events that record a decision. A request decided when it was created (auto-approved,
# denied, or rejected with no pool able to serve) has its decision in ``request.created``.
LATER_DECISIONS = ("request.decided", "request.expired", "request.cancelled")
CREATED = "request.created"


@dataclass(frozen=True, slots=True)
class KeyView:
    """A public key as listed: ``valid_until`` is when the last receipt it signed expires (None: still signing)."""

    kid: str
    tenant: str
    public_key: str
    created_at: datetime
    retired_at: datetime | None
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class NewReceipt:
    request_id: str
    tenant: str
    kid: str
    body: str
    issued_at: datetime
    expires_at: datetime


class ReceiptRepository:
    """Receipt keys and issued receipts, within a unit of work."""

    def __init__(self, session: AsyncSession, audit: AuditLog) -> None:
        self._session = session
        self._audit = audit

    async def signing_key(self, tenant: str) -> ReceiptKey | None:
        """The tenant's current signing key (the newest not retired), or None before the first."""
        query = (
            select(ReceiptKey)
            .where(ReceiptKey.tenant == tenant, ReceiptKey.retired_at.is_(None))
            .order_by(ReceiptKey.created_at.desc(), ReceiptKey.kid)
            .limit(1)
        )
        return (await self._session.scalars(query)).first()

    async def add_key(
        self, tenant: str, *, kid: str, private_key: str, public_key: str, now: datetime, actor: str | None = None
    ) -> ReceiptKey:
        """Make ``kid`` the tenant's signing key, retiring the one before (if any). Audited."""
        retired = await self._session.scalars(
            update(ReceiptKey)
            .where(ReceiptKey.tenant == tenant, ReceiptKey.retired_at.is_(None))
            .values(retired_at=now)
            .returning(ReceiptKey.kid)
            .execution_options(synchronize_session=False)
        )
        before = sorted(retired.all())
        row = ReceiptKey(
            kid=kid, tenant=tenant, private_key=private_key, public_key=public_key, created_at=now, retired_at=None
        )
        self._session.add(row)
        await self._session.flush()
        payload = {"kid": kid, "public_key": public_key, "retired": before}
        await self._audit.append(tenant, "tenant.receipt_key_created", now=now, actor=actor, payload=payload)
        return row

    async def keys(self, tenants: Iterable[str] | None, *, now: datetime, listed_only: bool = True) -> list[KeyView]:
        """The public keys of ``tenants`` (None: every tenant), oldest first. ``listed_only``: leave out
        retired keys whose every receipt has expired."""
        last = select(Receipt.kid, func.max(Receipt.expires_at).label("until")).group_by(Receipt.kid).subquery("last")
        query = select(ReceiptKey, last.c.until).outerjoin(last, last.c.kid == ReceiptKey.kid)
        if tenants is not None:
            query = query.where(ReceiptKey.tenant.in_(list(tenants)))
        query = query.order_by(ReceiptKey.tenant, ReceiptKey.created_at, ReceiptKey.kid)
        views = []
        for key, until in (await self._session.execute(query)).all():
            valid_until = None
            if key.retired_at is not None:
                last_expiry = _aware(until) if until is not None else None
                valid_until = max(key.retired_at, last_expiry) if last_expiry is not None else key.retired_at
            if listed_only and valid_until is not None and valid_until <= now:
                continue
            views.append(KeyView(key.kid, key.tenant, key.public_key, key.created_at, key.retired_at, valid_until))
        return views

    async def issued(self, request_ids: Sequence[str]) -> dict[str, str]:
        """The receipts already issued for ``request_ids``: request id -> receipt JSON."""
        if not request_ids:
            return {}
        rows = await self._session.execute(
            select(Receipt.request_id, Receipt.body).where(Receipt.request_id.in_(list(request_ids)))
        )
        return {str(r.request_id): str(r.body) for r in rows}

    async def store(self, receipts: Sequence[NewReceipt]) -> None:
        """Keep each receipt unless one was issued for its request meanwhile (the first one stands)."""
        if not receipts:
            return
        values = [
            {"request_id": r.request_id, "tenant": r.tenant, "kid": r.kid, "body": r.body,
             "issued_at": r.issued_at, "expires_at": r.expires_at}
            for r in receipts
        ]  # fmt: skip
        await self._session.execute(
            upsert_insert(self._session, Receipt).values(values).on_conflict_do_nothing(index_elements=["request_id"])
        )

    async def decision_seqs(self, tenant: str, request_ids: Sequence[str]) -> dict[str, int]:
        """The sealed ``seq`` of each request's decision event, for those whose decision is sealed.

        A request with a later decision event (decided, expired, cancelled) sealed gets that one's seq; one
        with such an event still unsealed gets none yet; one with neither was decided when created, and
        gets its ``request.created`` seq once that is sealed.
        """
        if not request_ids:
            return {}
        ids = list(request_ids)
        kinds = (*LATER_DECISIONS, CREATED)
        # One statement, so one snapshot: read in two, an event sealed between them is in neither, and the
        # request would look decided on arrival (its request.created seq signed instead of its decision's).
        sealed_rows = select(AuditEvent.request_id, AuditEvent.kind, AuditEvent.seq).where(
            AuditEvent.tenant == tenant, AuditEvent.request_id.in_(ids), AuditEvent.kind.in_(kinds)
        )
        unsealed_rows = select(AuditUnsealed.request_id, AuditUnsealed.kind, literal(None).label("seq")).where(
            AuditUnsealed.tenant == tenant, AuditUnsealed.request_id.in_(ids), AuditUnsealed.kind.in_(LATER_DECISIONS)
        )
        result: Any = await self._session.execute(union_all(sealed_rows, unsealed_rows))
        rows: list[tuple[str, str, int | None]] = [(str(row[0]), str(row[1]), row[2]) for row in result.all()]
        waiting = {str(request_id) for request_id, _, seq in rows if seq is None}
        sealed = [(request_id, kind, seq) for request_id, kind, seq in rows if seq is not None]
        later: dict[str, int] = {}
        created: dict[str, int] = {}
        for request_id, kind, seq in sealed:
            (created if kind == CREATED else later)[str(request_id)] = int(seq)
        found = {}
        for request_id in ids:
            if request_id in later:
                found[request_id] = later[request_id]
            elif request_id not in waiting and request_id in created:
                found[request_id] = created[request_id]
        return found


def _aware(at: Any) -> datetime:
    """A max() over a datetime column, should a driver hand it back as naive UTC (or as SQLite text)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    assert isinstance(at, datetime)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
