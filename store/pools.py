"""Reviewer pools and their versioned history.

Every change writes a ``config_change`` row (gapless ``version`` per tenant) and an audit
event in the same transaction, so "who could vote in pool P at time T" can be answered from
the history alone (:meth:`PoolRepository.membership_at`).

Change kinds and payloads::

    pool.create    {"channel", "usergroup", "members": [...]}
    pool.add       {"users": [...]}          pool.remove  {"users": [...]}
    pool.channel   {"channel"}               pool.away / pool.back  {"users": [...]}
    manifest.load  {"pools": {name: {"channel", "usergroup", "members"}}}  pools seeded from a manifest
    delegation.set / delegation.off  (see :mod:`store.delegations`)

A pool's view includes the delegations in force: a delegator is away, their delegate stands in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import null, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import PoolView
from store._sql import IdFactory, rowcount, upsert_insert
from store.audit import AuditLog
from store.delegations import DelegationRepository, in_force, replay, session_now
from store.errors import NotFound, PoolExists, TenantUnknown
from store.models import ConfigChange, Delegation, Pool, PoolMember, Tenant
from store.tenants import bump_config_version, check_name


@dataclass(frozen=True)
class PoolSeed:
    """A pool as a manifest declares it (``pools:``)."""

    channel: str | None = None
    usergroup: str | None = None
    members: tuple[str, ...] = ()


class PoolRepository:
    """Pools, members and their change history, within a unit of work."""

    def __init__(self, session: AsyncSession, audit: AuditLog, new_id: IdFactory) -> None:
        self._session = session
        self._audit = audit
        self._new_id = new_id

    async def create(
        self,
        tenant: str,
        name: str,
        *,
        now: datetime,
        actor: str | None,
        channel: str | None = None,
        usergroup: str | None = None,
        members: Iterable[str] = (),
    ) -> PoolView:
        """Create a pool. Versioned and audited.

        Raises:
            PoolExists: the tenant already has a pool of that name.
            InvalidName: the name breaks ``[a-z0-9_-]{1,64}``.
            TenantUnknown: no such tenant.
        """
        check_name(name, "pool")
        users = _unique(members)
        if not await self._insert_pool(tenant, name, channel, usergroup, users, now):
            raise PoolExists(f"pool {name!r} already exists for {tenant!r}")
        await self._record(
            tenant, "pool.create", name, now, actor, {"channel": channel, "usergroup": usergroup, "members": users}
        )
        return await self.get_or_raise(tenant, name)

    async def seed_from_manifest(
        self, tenant: str, pools: Mapping[str, PoolSeed], *, now: datetime, actor: str | None = None
    ) -> list[str]:
        """Create the manifest's pools that do not exist yet; existing pools are left alone
        (membership is managed from Slack once a pool exists). One ``manifest.load`` change.

        Returns:
            The names of the pools created (empty: nothing changed, no version taken).
        """
        created: dict[str, Any] = {}
        for name in sorted(pools):
            seed = pools[name]
            users = _unique(seed.members)
            if await self._insert_pool(tenant, check_name(name, "pool"), seed.channel, seed.usergroup, users, now):
                created[name] = {"channel": seed.channel, "usergroup": seed.usergroup, "members": users}
        if created:
            await self._record(tenant, "manifest.load", None, now, actor, {"pools": created})
        return sorted(created)

    async def add_members(
        self, tenant: str, name: str, users: Iterable[str], *, now: datetime, actor: str | None
    ) -> list[str]:
        """Add members (already-present ones are skipped). Versioned and audited if anything changed.

        Returns:
            The users actually added.

        Raises:
            NotFound: no such pool.
        """
        pool = await self._pool_or_raise(tenant, name)
        added = []
        for user in _unique(users):
            result = await self._session.execute(
                upsert_insert(self._session, PoolMember)
                .values(pool_id=pool.id, user_id=user, away=False, added_at=now)
                .on_conflict_do_nothing(index_elements=["pool_id", "user_id"])
            )
            if rowcount(result):
                added.append(user)
        if added:
            await self._record(tenant, "pool.add", name, now, actor, {"users": added})
        return added

    async def remove_members(
        self, tenant: str, name: str, users: Iterable[str], *, now: datetime, actor: str | None
    ) -> list[str]:
        """Remove members. Versioned and audited if anything changed.

        Returns:
            The users actually removed.

        Raises:
            NotFound: no such pool.
        """
        pool = await self._pool_or_raise(tenant, name)
        removed = []
        for user in _unique(users):
            member = await self._session.get(PoolMember, (pool.id, user))
            if member is not None:
                await self._session.delete(member)
                removed.append(user)
        if removed:
            await self._session.flush()
            await self._record(tenant, "pool.remove", name, now, actor, {"users": removed})
        return removed

    async def set_channel(
        self, tenant: str, name: str, channel: str | None, *, now: datetime, actor: str | None
    ) -> None:
        """Point the pool at a channel (None: no channel). Versioned and audited.

        Raises:
            NotFound: no such pool.
        """
        pool = await self._pool_or_raise(tenant, name)
        pool.channel = channel
        await self._session.flush()
        await self._record(tenant, "pool.channel", name, now, actor, {"channel": channel})

    async def set_away(
        self, tenant: str, name: str, users: Iterable[str], away: bool, *, now: datetime, actor: str | None
    ) -> list[str]:
        """Mark members away (``away=True``) or back. Versioned and audited if anything changed.

        Returns:
            The members whose flag changed (non-members are ignored).

        Raises:
            NotFound: no such pool.
        """
        pool = await self._pool_or_raise(tenant, name)
        changed = []
        for user in _unique(users):
            result = await self._session.execute(
                update(PoolMember)
                .where(PoolMember.pool_id == pool.id, PoolMember.user_id == user, PoolMember.away.is_not(away))
                .values(away=away)
                .execution_options(synchronize_session=False)
            )
            if rowcount(result):
                changed.append(user)
        if changed:
            await self._record(tenant, "pool.away" if away else "pool.back", name, now, actor, {"users": changed})
        return changed

    async def get(self, tenant: str, name: str) -> PoolView | None:
        """The pool's current state, or None."""
        pool = await self._pool(tenant, name)
        return None if pool is None else await self._view(pool)

    async def get_or_raise(self, tenant: str, name: str) -> PoolView:
        """The pool's current state.

        Raises:
            NotFound: no such pool.
        """
        return await self._view(await self._pool_or_raise(tenant, name))

    async def views(self, tenant: str) -> dict[str, PoolView]:
        """Every pool of the tenant by name (what ``policy.route`` takes)."""
        # One round trip, not one per pool nor one more for the delegations: every review request, card
        # and click reads this. Delegation rows come as (NULL, delegator, delegate, NULL).
        members = (
            select(Pool.name, Pool.channel, PoolMember.user_id, PoolMember.away)
            .outerjoin(PoolMember, PoolMember.pool_id == Pool.id)
            .where(Pool.tenant == tenant)
        )
        delegations = select(
            null().label("name"), Delegation.delegator, Delegation.delegate, null().label("away")
        ).where(in_force(tenant, session_now(self._session)))
        rows: Sequence[Any] = (await self._session.execute(union_all(members, delegations))).all()
        found: dict[str, tuple[str | None, set[str], set[str]]] = {}
        pairs: list[tuple[str, str]] = []
        for name, channel, user, away in rows:
            if name is None:
                pairs.append((channel, user))
                continue
            _, members_of, absent = found.setdefault(name, (channel, set(), set()))
            if user is not None:
                members_of.add(user)
                if away:
                    absent.add(user)
        delegated = tuple(sorted(pairs))
        return {
            name: _with_delegations(
                PoolView(name=name, channel=channel, members=frozenset(members), away=frozenset(absent)), delegated
            )
            for name, (channel, members, absent) in sorted(found.items())
        }

    async def changes(self, tenant: str, *, since_version: int = 0) -> Sequence[ConfigChange]:
        """The tenant's config changes with ``version > since_version``, oldest first."""
        result = await self._session.scalars(
            select(ConfigChange)
            .where(ConfigChange.tenant == tenant, ConfigChange.version > since_version)
            .order_by(ConfigChange.version)
        )
        return result.all()

    async def membership_at(self, tenant: str, name: str, at: datetime) -> PoolView | None:
        """The pool as it was at ``at``, replayed from the change history.

        Returns:
            Members, away flags and channel in force at ``at`` (changes stamped ``<= at``
            count), or None if the pool did not exist yet.
        """
        result = await self._session.scalars(
            select(ConfigChange)
            .where(ConfigChange.tenant == tenant, ConfigChange.at <= at)
            .order_by(ConfigChange.version)
        )
        exists = False
        channel: str | None = None
        members: set[str] = set()
        away: set[str] = set()
        for change in result:
            p = change.payload
            if change.kind == "manifest.load" and name in p.get("pools", {}):
                p, exists = p["pools"][name], True
                channel, members, away = p.get("channel"), set(p.get("members", [])), set()
            elif change.pool != name:
                continue
            elif change.kind == "pool.create":
                exists = True
                channel, members, away = p.get("channel"), set(p.get("members", [])), set()
            elif change.kind == "pool.add":
                members |= set(p["users"])
                away -= set(p["users"])
            elif change.kind == "pool.remove":
                members -= set(p["users"])
                away -= set(p["users"])
            elif change.kind == "pool.channel":
                channel = p.get("channel")
            elif change.kind == "pool.away":
                away |= set(p["users"]) & members
            elif change.kind == "pool.back":
                away -= set(p["users"])
        if not exists:
            return None
        history = await self.changes(tenant)
        delegated = tuple((who, by) for who, (by, _) in sorted(replay(history, at).items()))
        view = PoolView(name=name, channel=channel, members=frozenset(members), away=frozenset(away))
        return _with_delegations(view, delegated)

    async def _insert_pool(
        self, tenant: str, name: str, channel: str | None, usergroup: str | None, users: list[str], now: datetime
    ) -> bool:
        if await self._session.get(Tenant, tenant) is None:
            raise TenantUnknown(f"unknown tenant {tenant!r}")
        pool_id = self._new_id()
        result = await self._session.execute(
            upsert_insert(self._session, Pool)
            .values(id=pool_id, tenant=tenant, name=name, channel=channel, usergroup=usergroup, created_at=now)
            .on_conflict_do_nothing(index_elements=["tenant", "name"])
        )
        if not rowcount(result):
            return False
        for user in users:
            self._session.add(PoolMember(pool_id=pool_id, user_id=user, away=False, added_at=now))
        await self._session.flush()
        return True

    async def _record(
        self, tenant: str, kind: str, pool: str | None, now: datetime, actor: str | None, payload: dict[str, Any]
    ) -> None:
        version = await bump_config_version(self._session, tenant)
        self._session.add(
            ConfigChange(tenant=tenant, version=version, actor=actor, kind=kind, pool=pool, payload=payload, at=now)
        )
        await self._session.flush()
        await self._audit.append(
            tenant, f"config.{kind}", now=now, actor=actor, payload={"version": version, "pool": pool, **payload}
        )

    async def _pool(self, tenant: str, name: str) -> Pool | None:
        result = await self._session.scalars(
            select(Pool).where(Pool.tenant == tenant, Pool.name == name).execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def _pool_or_raise(self, tenant: str, name: str) -> Pool:
        pool = await self._pool(tenant, name)
        if pool is None:
            raise NotFound(f"no pool {name!r} for tenant {tenant!r}")
        return pool

    async def _view(self, pool: Pool) -> PoolView:
        rows = (
            await self._session.execute(
                select(PoolMember.user_id, PoolMember.away).where(PoolMember.pool_id == pool.id)
            )
        ).all()
        view = PoolView(
            name=pool.name,
            channel=pool.channel,
            members=frozenset(r.user_id for r in rows),
            away=frozenset(r.user_id for r in rows if r.away),
        )
        return _with_delegations(view, await self._delegations(pool.tenant))

    async def _delegations(self, tenant: str) -> tuple[tuple[str, str], ...]:
        found = await DelegationRepository(self._session, self._audit).in_force(tenant)
        return tuple((d.delegator, d.delegate) for d in found)


def _with_delegations(view: PoolView, delegated: tuple[tuple[str, str], ...]) -> PoolView:
    """The view with the delegations in force: a member who delegated counts as away (the away notion
    everyone already reads), and the pair is kept so their delegate stands in for them."""
    mine = tuple((who, by) for who, by in delegated if who in view.members)
    if not mine:
        return view
    away = view.away | {who for who, _ in mine}
    return view.model_copy(update={"away": away, "delegates": mine})


def _unique(users: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(users))
