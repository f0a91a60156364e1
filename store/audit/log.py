"""Writing audit events inside a unit of work, and reading a request's trail back.

A writer inserts its events unsealed, in the same transaction as the state change they
describe: one plain ``INSERT`` each, no lock, no read of any chain head. So no two writers
ever wait on each other because of the audit log, whatever their tenant or replica. The
sequencer (:mod:`store.audit.sequencer`) links them into the chain shortly after they commit.
There is no update or delete here.

Reads (``for_request``, ``recent``) show sealed and unsealed events alike: the sealed ones in
chain order, then the unsealed ones in insert order, which is the order the sequencer will
seal them in. Each read is one statement, so an event being sealed meanwhile is seen once,
on one side or the other.

Events no tenant vouches for (Slack requests refused before any tenant is known) go to the
system chain, :data:`SYSTEM_CHAIN`, through :func:`append_system`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, cast, insert, literal, null, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from policy.sensitive import canonical_json, redact
from store._sql import table_of, upsert_insert
from store.audit.chain import GENESIS_HASH, SYSTEM_CHAIN, AuditRecord, record_of
from store.errors import TenantUnknown
from store.models import AuditEvent, AuditHead, AuditUnsealed, Request, Tenant

_UNSEALED = table_of(AuditUnsealed)
_INSERT = insert(_UNSEALED)


@dataclass(frozen=True)
class NewEvent:
    """An event to append (see :meth:`AuditLog.append_many`)."""

    tenant: str
    kind: str
    at: datetime
    payload: Mapping[str, Any]
    request_id: str | None = None
    actor: str | None = None


def request_event(
    request: Request,
    kind: str,
    *,
    now: datetime,
    sensitive: Iterable[str],
    actor: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> NewEvent:
    """An event about a request; sensitive params enter the audit only as digests.

    Args:
        request: the request concerned.
        kind: event kind (``request.created``, ``request.decided``...).
        now: the event time.
        sensitive: dotted param paths to redact (the action's ``sensitive:`` list).
        actor: who caused it.
        extra: more payload fields; must not hold raw sensitive values.
    """
    payload: dict[str, Any] = {
        "action": request.action,
        "params": redact(request.params, sensitive),
        "params_sha256": request.params_sha256,
        "status": str(request.status),
        "stage": request.stage,
    }
    payload.update(extra or {})
    return NewEvent(request.tenant, kind, now, payload, request.id, actor)


_VERSION_OF = "countersign_policy_version_of"
VERSION_KEY = "policy_version"


def bind_policy_versions(
    sessionmaker: async_sessionmaker[AsyncSession], version_of: Callable[[str], int | None]
) -> None:
    """Tell the sessions of ``sessionmaker`` which policy version each tenant is served (the service's own
    policies): every event appended through them records it, unless it names one itself."""
    info = dict(sessionmaker.kw.get("info") or {})
    info[_VERSION_OF] = version_of
    sessionmaker.configure(info=info)


class AuditLog:
    """Appends and reads audit events within a unit of work. Append-only by construction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._version_of: Callable[[str], int | None] | None = session.info.get(_VERSION_OF)

    def _versioned(self, event: NewEvent) -> NewEvent:
        """The event with the policy version in force, when the service bound one and the event has none."""
        if self._version_of is None or VERSION_KEY in event.payload:
            return event
        version = self._version_of(event.tenant)
        return event if version is None else replace(event, payload={**event.payload, VERSION_KEY: version})

    async def append(
        self,
        tenant: str,
        kind: str,
        *,
        now: datetime,
        payload: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> AuditRecord:
        """Record one event of the tenant, committed (or rolled back) with the unit of work.

        The event is unsealed until the sequencer links it into the chain; until then the
        returned record has no ``seq`` or hash. Never put raw request params in ``payload``; use
        :meth:`append_request_event`, which replaces sensitive values with their digest.

        Args:
            tenant: whose chain the event joins.
            kind: what happened, dotted (``request.created``, ``vote.cast``, ``click.refused``).
            now: the event time.
            payload: JSON-able details; stored as canonical JSON.
            request_id: the request concerned, if any.
            actor: the Slack user or key that caused it, if any.

        Returns:
            The event as stored, unsealed.

        Raises:
            TenantUnknown: the tenant has no row.
        """
        row, record = _unsealed_row(self._versioned(NewEvent(tenant, kind, now, payload or {}, request_id, actor)))
        await self._insert([row])
        return record

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        """Record many events (a group commit's), in order, with one multi-row ``INSERT``.

        Raises:
            TenantUnknown: a tenant has no row.
        """
        if events:
            await self._insert([_unsealed_row(self._versioned(e))[0] for e in events])

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            # A Core statement with the values as parameters, not ORM objects: appends are hot.
            await self._session.execute(_INSERT, rows[0] if len(rows) == 1 else rows)
        except IntegrityError as exc:
            # The id is generated, so a tenant's foreign key is the only constraint left to fail.
            raise TenantUnknown(f"unknown tenant among {sorted({r['tenant'] for r in rows})}") from exc

    async def append_request_event(
        self,
        request: Request,
        kind: str,
        *,
        now: datetime,
        sensitive: Iterable[str],
        actor: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append :func:`request_event` (sensitive params only as digests); returns the stored event."""
        e = request_event(request, kind, now=now, sensitive=sensitive, actor=actor, extra=extra)
        return await self.append(e.tenant, e.kind, now=e.at, payload=e.payload, request_id=e.request_id, actor=e.actor)

    async def head(self, tenant: str) -> tuple[int, str]:
        """``(last seq, last hash)`` of the tenant's sealed chain; ``(0, GENESIS_HASH)`` when empty."""
        row = await self._session.get(AuditHead, tenant)
        return (row.seq, row.hash) if row else (0, GENESIS_HASH)

    async def for_request(self, tenant: str, request_id: str) -> list[AuditRecord]:
        """Every event of one request of one tenant: sealed ones in chain order, then unsealed ones."""
        sealed = _sealed().where(AuditEvent.tenant == tenant, AuditEvent.request_id == request_id)
        unsealed = _unsealed().where(AuditUnsealed.tenant == tenant, AuditUnsealed.request_id == request_id)
        both = union_all(sealed, unsealed).subquery()
        result = await self._session.execute(select(both).order_by(both.c.part, both.c.position))
        return [record_of(r) for r in result]

    async def recent(self, tenant: str, *, limit: int = 50) -> list[AuditRecord]:
        """The tenant's last ``limit`` events, newest first (unsealed ones are the newest)."""
        # Each side limited on its own index first, so a long chain is not sorted whole.
        sealed = _sealed().where(AuditEvent.tenant == tenant).order_by(AuditEvent.seq.desc()).limit(limit).subquery()
        unsealed = (
            _unsealed().where(AuditUnsealed.tenant == tenant).order_by(AuditUnsealed.id.desc()).limit(limit).subquery()
        )
        both = union_all(select(sealed), select(unsealed)).subquery()
        query = select(both).order_by(both.c.part.desc(), both.c.position.desc()).limit(limit)
        return [record_of(r) for r in await self._session.execute(query)]


async def append_system(
    session: AsyncSession, kind: str, *, now: datetime, payload: Mapping[str, Any] | None = None
) -> AuditRecord:
    """Append one event to the system chain (:data:`SYSTEM_CHAIN`), creating the chain on first use.

    The chain's tenant row is made here rather than by a migration: it exists only once
    something was appended (:meth:`~store.tenants.TenantRepository.names` leaves it out). The insert is a
    no-op when the row exists (and on a race, the loser waits at the primary key); the head
    row is made by the sequencer when it seals the chain's first event.

    Args:
        session: the unit of work's session.
        kind: what happened (``slack.refused``).
        now: the event time.
        payload: JSON-able details; never a request body or a secret.

    Returns:
        The stored event, unsealed.
    """
    ensure = upsert_insert(session, Tenant).values(name=SYSTEM_CHAIN, created_at=now, config_version=0)
    await session.execute(ensure.on_conflict_do_nothing(index_elements=["name"]))
    return await AuditLog(session).append(SYSTEM_CHAIN, kind, now=now, payload=payload)


# A sealed event as :func:`store.audit.chain.record_of` reads it (the trail, the export).
SEALED_COLUMNS = (
    AuditEvent.tenant,
    AuditEvent.seq,
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.kind,
    AuditEvent.request_id,
    AuditEvent.actor,
    AuditEvent.at,
    AuditEvent.payload,
)


# ``part`` puts sealed events (0) before unsealed ones (1); ``position`` orders within each.
def _sealed() -> Select[*tuple[Any, ...]]:
    return select(
        *SEALED_COLUMNS,
        literal(0, Integer).label("part"),
        AuditEvent.seq.label("position"),
    )


def _unsealed() -> Select[*tuple[Any, ...]]:
    return select(
        AuditUnsealed.tenant,
        cast(null(), BigInteger).label("seq"),
        cast(null(), String).label("prev_hash"),
        cast(null(), String).label("hash"),
        AuditUnsealed.kind,
        AuditUnsealed.request_id,
        AuditUnsealed.actor,
        AuditUnsealed.at,
        AuditUnsealed.payload,
        literal(1, Integer).label("part"),
        cast(AuditUnsealed.id, BigInteger).label("position"),
    )


def _unsealed_row(event: NewEvent) -> tuple[dict[str, Any], AuditRecord]:
    """The ``audit_unsealed`` row of an event, and the event as it will read back."""
    # Round-trip through canonical JSON so the stored text and the hashed value are the
    # same thing whatever the caller passed (tuples, datetimes, non-str keys).
    payload_text = canonical_json(dict(event.payload))
    parsed: dict[str, Any] = json.loads(payload_text)
    row = {
        "tenant": event.tenant,
        "kind": event.kind,
        "request_id": event.request_id,
        "actor": event.actor,
        "at": event.at,
        "payload": payload_text,
    }
    at = event.at.astimezone(UTC)
    return row, AuditRecord(event.tenant, None, None, None, event.kind, event.request_id, event.actor, at, parsed)
