"""Delegations: while someone is away, a delegate votes for them in their pools.

A delegation is in force from when it is set until ``until`` (exclusive: the end of the day the
person named) or until it is ended (``/hitl delegate off``). Setting and ending one are config
changes like pool changes: a ``config_change`` row (the tenant's next version) and a
``config.delegation.*`` audit event, in the caller's transaction::

    delegation.set  {"delegator", "delegate", "until"}     delegation.off  {"delegator", "delegate"}

Both take the tenant's config version first: that row lock serializes every delegation change of
a tenant, so the checks against chains (``A -> B`` while ``B -> C`` is being set) cannot race.

What is in force depends on the time; the store reads it from the session's clock
(:func:`bind_clock`, set once by the runtime), so every pool view (ballots, queues, routing, the
commands) sees the same delegations without each caller passing ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store._sql import rowcount
from store.audit import AuditLog
from store.errors import StoreError
from store.models import ConfigChange, Delegation
from store.tenants import bump_config_version

_CLOCK = "countersign_now"


def bind_clock(sessionmaker: async_sessionmaker[AsyncSession], now: Callable[[], datetime]) -> None:
    """Tell the sessions of ``sessionmaker`` what time it is (the service's injected clock)."""
    info = dict(sessionmaker.kw.get("info") or {})
    info[_CLOCK] = now
    sessionmaker.configure(info=info)


def session_now(session: AsyncSession) -> datetime:
    """The time by the clock bound to the session's factory (the wall clock where none was bound)."""
    now: Callable[[], datetime] | None = session.info.get(_CLOCK)
    return now() if now is not None else datetime.now(UTC)


class DelegationRefused(StoreError):
    """The delegation would make a chain (someone delegating to a delegator, or a delegate delegating)."""


@dataclass(frozen=True, slots=True)
class InForce:
    """A delegation in force."""

    delegator: str
    delegate: str
    until: datetime | None  # exclusive; None: until ended


def in_force(tenant: str, at: datetime) -> Any:
    """The condition of the tenant's delegations in force at ``at`` (for a query of its own or a union)."""
    return and_(
        Delegation.tenant == tenant,
        Delegation.ended_at.is_(None),
        or_(Delegation.until.is_(None), Delegation.until > at),
    )


class DelegationRepository:
    def __init__(self, session: AsyncSession, audit: AuditLog) -> None:
        self._session = session
        self._audit = audit

    async def in_force(self, tenant: str, now: datetime | None = None) -> list[InForce]:
        """The tenant's delegations in force at ``now`` (default: the session's clock), by delegator."""
        at = now or session_now(self._session)
        query = select(Delegation.delegator, Delegation.delegate, Delegation.until).where(in_force(tenant, at))
        rows = await self._session.execute(query.order_by(Delegation.delegator))
        return [InForce(d, g, u) for d, g, u in rows]

    async def tenants_delegated_to(self, user: str, now: datetime | None = None) -> set[str]:
        """The tenants where ``user`` stands in for someone now (they belong there while it lasts)."""
        at = now or session_now(self._session)
        found = await self._session.scalars(
            select(Delegation.tenant).where(
                Delegation.delegate == user,
                Delegation.ended_at.is_(None),
                or_(Delegation.until.is_(None), Delegation.until > at),
            )
        )
        return set(found)

    async def set(
        self, tenant: str, delegator: str, delegate: str, *, until: datetime | None, now: datetime, actor: str
    ) -> InForce | None:
        """Put ``delegate`` in for ``delegator`` (replacing the delegation they had). Versioned and audited.

        Returns:
            The delegation it replaced, if one was in force.

        Raises:
            DelegationRefused: ``delegate`` has delegated, or someone has delegated to ``delegator``.
            TenantUnknown: no such tenant.
        """
        version = await bump_config_version(self._session, tenant)  # first: the lock that serializes the checks
        current = {d.delegator: d for d in await self.in_force(tenant, now)}
        if delegate in current:
            raise DelegationRefused(f"{delegate} has delegated to {current[delegate].delegate}")
        if others := sorted(d.delegator for d in current.values() if d.delegate == delegator):
            raise DelegationRefused(f"{', '.join(others)} delegated to {delegator}")
        previous = current.get(delegator)
        await self._close(tenant, delegator, now)
        self._session.add(
            Delegation(tenant=tenant, delegator=delegator, delegate=delegate, until=until, created_at=now)
        )
        payload = {"delegator": delegator, "delegate": delegate, "until": until.isoformat() if until else None}
        await self._record(tenant, version, "delegation.set", now, actor, payload)
        return previous

    async def end(self, tenant: str, delegator: str, *, now: datetime, actor: str) -> InForce | None:
        """End ``delegator``'s delegation. Versioned and audited if one was in force.

        Returns:
            The delegation ended, or None when none was in force (nothing changed).
        """
        current = next((d for d in await self.in_force(tenant, now) if d.delegator == delegator), None)
        # The conditional close decides who ended it when two try at once; one whose day had already
        # passed is closed too, but changed nothing anyone could see: no version.
        if not await self._close(tenant, delegator, now) or current is None:
            return None
        version = await bump_config_version(self._session, tenant)
        payload = {"delegator": delegator, "delegate": current.delegate}
        await self._record(tenant, version, "delegation.off", now, actor, payload)
        return current

    async def _close(self, tenant: str, delegator: str, now: datetime) -> bool:
        # Conditional: only the open row is closed, once, whoever else tries at the same time.
        result = await self._session.execute(
            update(Delegation)
            .where(Delegation.tenant == tenant, Delegation.delegator == delegator, Delegation.ended_at.is_(None))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
        await self._session.flush()
        return rowcount(result) > 0

    async def _record(
        self, tenant: str, version: int, kind: str, now: datetime, actor: str, payload: dict[str, Any]
    ) -> None:
        self._session.add(
            ConfigChange(tenant=tenant, version=version, actor=actor, kind=kind, pool=None, payload=payload, at=now)
        )
        await self._session.flush()
        await self._audit.append(
            tenant, f"config.{kind}", now=now, actor=actor, payload={"version": version, "pool": None, **payload}
        )


def replay(changes: Sequence[ConfigChange], at: datetime) -> dict[str, tuple[str, datetime | None]]:
    """The delegations in force at ``at`` (delegator -> (delegate, until)), replayed from the history."""
    found: dict[str, tuple[str, datetime | None]] = {}
    for change in changes:
        if change.at > at:
            break
        p = change.payload
        if change.kind == "delegation.set":
            until = datetime.fromisoformat(p["until"]) if p.get("until") else None
            found[p["delegator"]] = (p["delegate"], until)
        elif change.kind == "delegation.off":
            found.pop(p["delegator"], None)
    return {who: (by, until) for who, (by, until) in found.items() if until is None or until > at}
