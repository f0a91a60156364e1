"""The use cases behind the App Home. No Slack here: people in, typed Homes out.

A person's Home shows the requests they may vote on now, across every tenant they belong to, and
the pools they are in. Only the Homes of people who have opened the tab are ever refreshed
(:class:`store.homes.HomeViewers`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.home.answers import BulkOffer, HomeAnswer, Membership
from bot.policyset import PolicySet
from bot.queue import QueueItem, is_admin, queue_item, tenants_of
from bot.service.policychanges import may_change_policy
from policy import PoolView
from store import stats as queries
from store.uow import uow

HOME_LIMIT = 25


@dataclass
class HomeService:
    sessionmaker: async_sessionmaker[AsyncSession]
    policies: PolicySet
    clock: Clock

    async def homes_to_refresh(self, tenant: str, request_id: str, users: list[str] | None) -> list[str]:
        """Whose Home tab may show the request and has been opened: ``users``, or by default the
        members of the pools of the request's opened stages. Nobody else has a Home tab to refresh."""
        return (await self.homes_to_refresh_many([(tenant, request_id, users)]))[0]

    async def homes_to_refresh_many(self, refreshes: Sequence[tuple[str, str, list[str] | None]]) -> list[list[str]]:
        """:meth:`homes_to_refresh` for each (tenant, request id, users), in one read for them all."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            stages = await tx.stages.stages_of([r for _, r, users in refreshes if users is None])
            tenants = sorted({t for t, _, users in refreshes if users is None})
            views = {tenant: await tx.pools.views(tenant) for tenant in tenants}
            wanted: list[list[str]] = []
            for tenant, request_id, users in refreshes:
                if users is None:
                    pools = {s.pool for s in stages[request_id]}
                    # Members and the delegates standing in for them: both may have it in their queue.
                    users = sorted(set().union(*(views[tenant][p].voters for p in pools if p in views[tenant])))
                wanted.append(users)
            opened = await tx.homes.among(sorted(set().union(*wanted)))
        return [sorted(set(users) & set(opened)) for users in wanted]

    async def home_opened(self, user: str) -> None:
        """``user`` opened the App Home: from now on their Home is refreshed when it changes."""
        async with uow(self.sessionmaker) as tx:
            await tx.homes.opened(user, now=self.clock.now())

    async def homes(self, users: Sequence[str]) -> list[HomeAnswer]:
        """Each of ``users``' Home: the requests they may vote on now, across tenants (highest risk,
        then oldest, first), and the pools they are in.

        One read for them all: a refresh publishes the Homes of a whole pool, and their tenants'
        pools and pending requests are the same for every one of them.
        """
        async with uow(self.sessionmaker, read_only=True) as tx:
            tenants = {user: await tenants_of(tx, self.policies, user) for user in users}
            needed = sorted(set().union(*tenants.values()))
            views = {tenant: await tx.pools.views(tenant) for tenant in needed}
            pending = {tenant: await queries.pending_rows(tx.session, tenant, riskiest_first=True) for tenant in needed}
        now = self.clock.now()
        return [self._home(user, tenants[user], views, pending, now) for user in users]

    def _home(
        self,
        user: str,
        tenants: list[str],
        views: dict[str, dict[str, PoolView]],
        pending: dict[str, list[queries.PendingRow]],
        now: datetime,
    ) -> HomeAnswer:
        items: list[QueueItem] = []
        memberships: list[Membership] = []
        for tenant in tenants:
            pools = views[tenant]
            memberships += [Membership(tenant, v.name, user in v.away) for v in pools.values() if user in v.members]
            policy = self.policies.tenants.get(tenant)
            for row in pending[tenant]:
                item = queue_item(row, policy, pools, user)
                if item.can_vote:
                    items.append(item)
        items.sort(key=lambda i: (-i.risk.rank, i.created_at, i.request_id))
        # Counted over the whole queue, not the part shown: a burst is what bulk approval is for.
        per_action = Counter((i.tenant, i.action) for i in items)
        bulk = tuple(BulkOffer(t, a, n) for (t, a), n in sorted(per_action.items()) if n >= 2)
        return HomeAnswer(
            user=user,
            items=tuple(items[:HOME_LIMIT]),
            memberships=tuple(memberships),
            admin_of=tuple(t for t in tenants if is_admin(self.policies, t, user)),
            now=now,
            more=max(0, len(items) - HOME_LIMIT),
            tenants=tuple(tenants),
            bulk=bulk,
            policy_of=tuple(t for t, p in sorted(self.policies.tenants.items()) if may_change_policy(p, user)),
        )
