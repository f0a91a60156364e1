"""The use cases behind ``/hitl``. No Slack here: commands in, typed answers out.

Who may do what:

- read (every verb but the pool changes): the tenant's admins and the members of any of its pools;
- change pools (create, add, remove, channel; away/back for someone else): the tenant's admins;
- ``pool away|back <pool>`` for oneself: any member of that pool.

A person never learns anything about a tenant they are not part of: naming one answers
exactly as naming a tenant that does not exist. Every change goes through
:class:`store.pools.PoolRepository`, which versions and audits it in the same transaction.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import queue
from bot.clock import Clock
from bot.commands import audit, delegation, policy_changes
from bot.commands import parse as p
from bot.commands.answers import (
    Answer,
    ChangeAnswer,
    ChangeLine,
    HelpAnswer,
    HistoryAnswer,
    PendingAnswer,
    PolicyAnswer,
    PoolAnswer,
    PoolInfo,
    PoolsAnswer,
    PoolStats,
    ShowAnswer,
    StatsAnswer,
    WhoCanAnswer,
)
from bot.commands.policy_commands import PolicyDecide, PolicyEdit, PolicyRollback
from bot.errors import Conflict, Forbidden, NotFound
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import callback_key
from bot.service.policychanges import PolicyChanges
from bot.service.reveals import revealed_in
from policy import (
    ActionRequest,
    Outcome,
    PoolView,
    RequestContext,
    Status,
    cannot_serve,
    decide,
    route,
    route_quorum,
)
from store import errors as store_errors
from store import stats as queries
from store.models import Tenant
from store.uow import Tx, uow

# Expands a Slack user group (``<!subteam^S…>``) to its members; supplied by the Slack edge.
GroupMembers = Callable[[str], Awaitable[Sequence[str]]]

NO_TENANT = (
    "You are not an admin or a reviewer of any team using Countersign, so there is nothing to show you yet. "
    "Ask a tenant admin to add you to a reviewer pool."
)
HISTORY_LIMIT = 25


@dataclass
class CommandService:
    sessionmaker: async_sessionmaker[AsyncSession]
    policies: PolicySet
    clock: Clock

    # -- who is where ---------------------------------------------------------------------

    async def tenants_of(self, user: str) -> list[str]:
        """The tenants ``user`` belongs to (admin, or member of one of its pools), by name."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await queue.tenants_of(tx, self.policies, user)

    def is_admin(self, tenant: str, user: str) -> bool:
        return queue.is_admin(self.policies, tenant, user)

    # -- /hitl ----------------------------------------------------------------------------

    async def run(
        self,
        user: str,
        parsed: p.Parsed,
        groups: GroupMembers | None = None,
        person: delegation.PersonCheck | None = None,
    ) -> Answer:
        """Answer one command for ``user``.

        Raises:
            Forbidden: not part of the tenant, not an admin, several tenants and none named.
            NotFound: no such pool or request in the tenant.
            Conflict: a pool of that name already exists.
        """
        command = parsed.command
        mine = await self.tenants_of(user)
        if isinstance(command, p.Help) and parsed.tenant is not None and parsed.tenant not in mine:
            # "/hitl pols": a lone word that is no verb was read as a tenant; say it is not understood.
            raise NotFound(p.unknown_word(parsed.tenant))
        if isinstance(command, p.Help):
            admin_of = tuple(t for t in mine if self.is_admin(t, user))
            return HelpAnswer(tuple(mine), admin_of, command.topic)
        if isinstance(command, p.Show) and parsed.tenant is None and len(mine) > 1:
            return await self._show_anywhere(mine, command.request_id)
        tenant = self._resolve(user, mine, parsed)
        if isinstance(command, p.Audit):
            return await audit.run(self.sessionmaker, self.clock.now(), tenant, command)
        if isinstance(command, PolicyEdit | PolicyRollback | PolicyDecide):
            changes = PolicyChanges(sessionmaker=self.sessionmaker, policies=self.policies, clock=self.clock)
            return await policy_changes.run(changes, user, tenant, command)
        if isinstance(command, p.Delegate | p.DelegateOff):
            return await delegation.run(self.sessionmaker, self.clock.now(), user, tenant, command, person)
        if isinstance(command, p.CHANGES):
            if groups is not None:
                command = await _expand(command, groups)
            return await self._change(user, tenant, command)
        if isinstance(command, p.ListPools):
            return await self._pools(user, tenant)
        if isinstance(command, p.PoolShow):
            return await self._pool(tenant, command)
        if isinstance(command, p.Pending):
            return await self._pending(user, tenant, command.pool)
        if isinstance(command, p.Show):
            return await self._show(tenant, command.request_id)
        if isinstance(command, p.Stats):
            return await self._stats(tenant, command)
        if isinstance(command, p.PolicyShow):
            return PolicyAnswer(tenant, self.policies.get(tenant), command.action)
        if isinstance(command, p.WhoCan):
            return await self._whocan(tenant, command)
        assert isinstance(command, p.History)
        return await self._history(tenant)

    def _resolve(self, user: str, mine: list[str], parsed: p.Parsed) -> str:
        if parsed.tenant is not None:
            if parsed.tenant in mine:
                return parsed.tenant
            # Same words for a tenant that exists and one that does not: nothing leaks.
            yours = f" Yours: {', '.join(f'`{t}`' for t in mine)}." if mine else ""
            raise Forbidden(f"You are not part of a tenant named `{parsed.tenant}`.{yours}")
        if not mine:
            raise Forbidden(NO_TENANT)
        if len(mine) > 1:
            names = ", ".join(f"`{t}`" for t in mine)
            raise Forbidden(
                f"You belong to several tenants ({names}); put the one you mean first, e.g. `/hitl {mine[0]} pools`."
            )
        return mine[0]

    # -- reading --------------------------------------------------------------------------

    async def _pools(self, user: str, tenant: str) -> PoolsAnswer:
        async with uow(self.sessionmaker, read_only=True) as tx:
            views = await tx.pools.views(tenant)
            delegations = tuple((d.delegator, d.delegate, d.until) for d in await tx.delegations.in_force(tenant))
        pools = tuple(_info(v) for v in views.values())
        return PoolsAnswer(tenant, pools, self.is_admin(tenant, user), delegations)

    async def _pool(self, tenant: str, command: p.PoolShow) -> PoolAnswer:
        async with uow(self.sessionmaker, read_only=True) as tx:
            if command.at is None:
                view = await tx.pools.get(tenant, command.pool)
                if view is None:
                    raise NotFound(f"`{tenant}` has no pool `{command.pool}`. See `/hitl pools`.")
                return PoolAnswer(tenant, _info(view))
            view = await tx.pools.membership_at(tenant, command.pool, command.at)
            if view is None:
                raise NotFound(f"`{tenant}` had no pool `{command.pool}` at {command.at:%Y-%m-%d %H:%M:%S} UTC.")
            versions = [c.version for c in await tx.pools.changes(tenant) if c.at <= command.at]
        return PoolAnswer(tenant, _info(view, judge=False), command.at, versions[-1] if versions else None)

    async def _pending(self, user: str, tenant: str, pool: str | None) -> PendingAnswer:
        async with uow(self.sessionmaker, read_only=True) as tx:
            views = await tx.pools.views(tenant)
            if pool is not None and pool not in views:
                raise NotFound(f"`{tenant}` has no pool `{pool}`. See `/hitl pools`.")
            rows = await queries.pending_rows(tx.session, tenant, pool=pool)
        policy = self.policies.tenants.get(tenant)
        items = tuple(queue.queue_item(r, policy, views, user) for r in rows)
        return PendingAnswer(tenant, pool, items, self.clock.now())

    async def _show_anywhere(self, tenants: list[str], request_id: str) -> ShowAnswer:
        # A request id names one tenant's request: no need to make a member of several say which.
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = [t for t in tenants if await tx.requests.get(t, request_id) is not None]
        if not found:
            raise NotFound(f"None of your tenants has a request `{request_id}`.")
        return await self._show(found[0], request_id)

    async def _show(self, tenant: str, request_id: str) -> ShowAnswer:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(tenant, request_id)
            if row is None:
                raise NotFound(f"`{tenant}` has no request `{request_id}`.")
            votes = await tx.votes.votes(row.id)
            stages = await tx.stages.stages(row.id)
            records = await tx.audit.for_request(tenant, row.id)
            callback = await _undelivered_callback(tx, tenant, row.id, self.clock.now())
        return ShowAnswer(
            tenant=tenant,
            request_id=row.id,
            action=row.action,
            summary=render.summary(row, self.policies.tenants.get(tenant)),
            status=row.status,
            risk=row.risk,
            created_at=row.created_at,
            approvals_required=row.approvals_required,
            votes=tuple((v.user_id, v.choice.value, v.reason) for v in votes),
            stages=tuple((s.pool, s.deadline_at) for s in stages),
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            reason=row.decision_reason,
            trail=tuple(render.trail(records)),
            callback=callback,
            reveals=tuple((r.at, r.user, r.field) for r in revealed_in(records)),
        )

    async def _stats(self, tenant: str, command: p.Stats) -> StatsAnswer:
        since = self.clock.now() - command.window
        async with uow(self.sessionmaker, read_only=True) as tx:
            counts = await queries.pool_counts(tx.session, tenant, since)
            latencies = await queries.decision_latencies(tx.session, tenant, since)
            by_status = await queries.status_counts(tx.session, tenant, since)
        pools = []
        for c in counts:
            took = sorted(latencies.get(c.pool, []))
            pools.append(
                PoolStats(
                    pool=c.pool,
                    requests=c.total,
                    approved=c.by_status.get(Status.APPROVED, 0),
                    rejected=c.by_status.get(Status.REJECTED, 0),
                    timed_out=c.by_status.get(Status.EXPIRED, 0),
                    pending=c.by_status.get(Status.PENDING, 0),
                    p50=percentile(took, 50),
                    p95=percentile(took, 95),
                    sla_breaches=c.sla_breaches,
                    escalations=c.escalations,
                )
            )
        return StatsAnswer(tenant, command.label, since, tuple(pools), by_status)

    async def _whocan(self, tenant: str, command: p.WhoCan) -> WhoCanAnswer:
        policy = self.policies.get(tenant)
        request = ActionRequest(
            tenant=tenant,
            action=command.action,
            params=command.params,
            context=RequestContext(on_behalf_of=command.on_behalf_of),
        )
        # A dry run: never sampled, no workflow backlog.
        verdict = decide(policy, request, sample_draw=1.0, pending_in_workflow=0)
        async with uow(self.sessionmaker, read_only=True) as tx:
            views = await tx.pools.views(tenant)
        plan = None
        people: dict[str, tuple[str, ...]] = {}
        quorum = None
        if verdict.outcome is Outcome.REVIEW and verdict.quorum:
            quorum = route_quorum(verdict.quorum, views, command.on_behalf_of)
            for _, routed in quorum.lines:
                for stage in routed.stages:
                    people[stage.pool] = tuple(sorted(views[stage.pool].eligible(exclude=command.on_behalf_of)))
        elif verdict.outcome is Outcome.REVIEW:
            plan = route(verdict.stages, verdict.approvals, views, command.on_behalf_of)
            for stage in plan.stages:
                people[stage.pool] = tuple(sorted(views[stage.pool].eligible(exclude=command.on_behalf_of)))
        channels = {name: v.channel for name, v in views.items()}
        return WhoCanAnswer(
            tenant, command.action, command.params, command.on_behalf_of, verdict, plan, people, channels, quorum
        )

    async def _history(self, tenant: str) -> HistoryAnswer:
        async with uow(self.sessionmaker, read_only=True) as tx:
            changes = await tx.pools.changes(tenant)
        lines = [ChangeLine(c.version, c.at, c.actor, c.kind, c.pool, c.payload) for c in changes]
        return HistoryAnswer(tenant, tuple(reversed(lines[-HISTORY_LIMIT:])), len(lines))

    # -- changing -------------------------------------------------------------------------

    async def _change(self, user: str, tenant: str, command: p.Command) -> ChangeAnswer:
        admin = self.is_admin(tenant, user)
        if isinstance(command, p.PoolAway):
            targets = command.members.users or (user,)
            if not admin and set(targets) != {user}:
                raise Forbidden(
                    f"Only `{tenant}`'s admins can mark other people away or back. "
                    f"To mark yourself: `/hitl pool {'away' if command.away else 'back'} {command.pool}`."
                )
            return await self._away(user, tenant, command.pool, targets, command.away, admin)
        if not admin:
            raise Forbidden(
                f"Only `{tenant}`'s admins ({_people(self.policies.get(tenant).manifest.admins)}) can change pools. "
                "You can mark yourself away or back: `/hitl pool away <pool>`."
            )
        now = self.clock.now()
        try:
            async with uow(self.sessionmaker) as tx:
                answer = await self._apply(tx, user, tenant, command, now)
                if answer.done:
                    answer = replace(answer, version=await _version(tx, tenant))
        except store_errors.PoolExists as exc:
            raise Conflict(f"`{tenant}` already has a pool `{getattr(command, 'pool', '?')}`.") from exc
        except store_errors.NotFound as exc:
            raise NotFound(f"`{tenant}` has no pool `{getattr(command, 'pool', '?')}`. See `/hitl pools`.") from exc
        return answer

    async def _apply(self, tx: Tx, user: str, tenant: str, command: p.Command, now: datetime) -> ChangeAnswer:
        if isinstance(command, p.PoolCreate):
            users = command.members.users
            await tx.pools.create(tenant, command.pool, now=now, actor=user, channel=command.channel, members=users)
            where = f" in <#{command.channel}>" if command.channel else " (no channel yet: `/hitl pool channel`)"
            who = f" with {_people(users)}" if users else " with no members yet (`/hitl pool add`)"
            return ChangeAnswer(tenant, command.pool, f"Created pool `{command.pool}`{where}{who}.")
        if isinstance(command, p.PoolAdd):
            users = command.members.users
            added = await tx.pools.add_members(tenant, command.pool, users, now=now, actor=user)
            already = [u for u in users if u not in added]
            return ChangeAnswer(
                tenant,
                command.pool,
                f"Added {_people(added)} to `{command.pool}`." if added else "",
                f"Already members: {_people(already)}." if already else "",
            )
        if isinstance(command, p.PoolRemove):
            users = command.members.users
            removed = await tx.pools.remove_members(tenant, command.pool, users, now=now, actor=user)
            absent = [u for u in users if u not in removed]
            return ChangeAnswer(
                tenant,
                command.pool,
                f"Removed {_people(removed)} from `{command.pool}`." if removed else "",
                f"Not members: {_people(absent)}." if absent else "",
            )
        assert isinstance(command, p.PoolChannel)
        await tx.pools.set_channel(tenant, command.pool, command.channel, now=now, actor=user)
        where = f"<#{command.channel}>" if command.channel else "no channel (it cannot take requests)"
        return ChangeAnswer(tenant, command.pool, f"Pool `{command.pool}` now posts to {where}.")

    async def _away(
        self, user: str, tenant: str, pool: str, targets: Sequence[str], away: bool, admin: bool
    ) -> ChangeAnswer:
        now = self.clock.now()
        word = "away" if away else "back"
        async with uow(self.sessionmaker) as tx:
            view = await tx.pools.get(tenant, pool)
            if view is None:
                raise NotFound(f"`{tenant}` has no pool `{pool}`. See `/hitl pools`.")
            if not admin and user not in view.members:
                raise Forbidden(f"You are not a member of `{pool}`, so there is nothing to mark {word} there.")
            changed = await tx.pools.set_away(tenant, pool, targets, away, now=now, actor=user)
            version = await _version(tx, tenant) if changed else None
        strangers = [u for u in targets if u not in view.members]
        same = [u for u in targets if u in view.members and u not in changed]
        notes = []
        if same:
            notes.append(f"Already {word}: {_people(same)}.")
        if strangers:
            notes.append(f"Not members of `{pool}`: {_people(strangers)}.")
        done = ""
        if changed:
            done = f"Marked {_people(changed, me=user)} {word} in `{pool}`."
            if away:
                done += " Requests will not count on them until they are back; they may still vote."
        return ChangeAnswer(tenant, pool, done, " ".join(notes), version)


def percentile(sorted_values: Sequence[timedelta], pct: float) -> timedelta | None:
    """Nearest-rank percentile of an ascending list (None when empty): p50 of 1..4 is 2, p95 is 4."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _info(view: PoolView, *, judge: bool = True) -> PoolInfo:
    return PoolInfo(
        name=view.name,
        channel=view.channel,
        members=tuple(sorted(view.members)),
        away=tuple(sorted(view.away)),
        cannot_serve=cannot_serve(view, 1, None) if judge else None,
        stand_ins=tuple(sorted(view.stand_ins.items())),
    )


async def _expand(command: p.Command, groups: GroupMembers) -> p.Command:
    """Replace user groups named in a change by their members (asked of Slack at the edge)."""
    if not isinstance(command, p.PoolCreate | p.PoolAdd | p.PoolRemove | p.PoolAway) or not command.members.groups:
        return command
    users = list(command.members.users)
    for group in command.members.groups:
        users += await groups(group)
    return replace(command, members=p.Targets(tuple(dict.fromkeys(users))))


async def _undelivered_callback(
    tx: Tx, tenant: str, request_id: str, now: datetime
) -> tuple[str, int, str | None] | None:
    """The request's callback if it was tried and not delivered: retrying, or given up (failed)."""
    key = callback_key(request_id)
    for entry in await tx.outbox.inspect(now=now, tenant=tenant, dedupe_key=key, limit=1):
        if entry.attempts > 0:
            return entry.state.value, entry.attempts, entry.last_error
    return None


async def _version(tx: Tx, tenant: str) -> int | None:
    row = await tx.session.get(Tenant, tenant, populate_existing=True)
    return row.config_version if row else None


def _people(users: Sequence[str], *, me: str | None = None) -> str:
    return ", ".join("you" if u == me else f"<@{u}>" for u in users) or "nobody"
