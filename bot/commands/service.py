"""The use cases behind ``/hitl``. No Slack here: commands in, typed answers out.

Who may do what:

- read (every verb but the pool changes): the tenant's admins and the members of any of its pools;
- change pools (create, add, remove, channel; away/back for someone else): the tenant's admins;
- ``pool away|back <pool>`` for oneself: any member of that pool.

A person never learns anything about a tenant they are not part of: naming one answers
exactly as naming a tenant that does not exist. The pool changes are in :mod:`bot.commands.pool_changes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import queue
from bot.clock import Clock
from bot.commands import audit, delegation, policy_changes, pool_changes
from bot.commands import command as cmd
from bot.commands.answers import (
    Answer,
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
from bot.commands.parse import unknown_word
from bot.commands.policy_commands import PolicyDecide, PolicyEdit, PolicyRollback
from bot.errors import Forbidden, NotFound
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import callback_key
from bot.service.escalations import QUESTION
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
from store import stats as queries
from store.answers import AnswerRepository
from store.uow import Tx, uow

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
    changes: PolicyChanges  # the runtime's one (it tells the metrics of the actions a change adds)

    # -- who is where ---------------------------------------------------------------------

    async def tenants_of(self, user: str) -> list[str]:
        """The tenants ``user`` belongs to (admin, policy editor, or member of one of its pools), by name."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await queue.tenants_of(tx, self.policies, user)

    def is_admin(self, tenant: str, user: str) -> bool:
        return queue.is_admin(self.policies, tenant, user)

    # -- /hitl ----------------------------------------------------------------------------

    async def run(
        self,
        user: str,
        parsed: cmd.Parsed,
        groups: pool_changes.GroupMembers | None = None,
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
        if isinstance(command, cmd.Help) and parsed.tenant is not None and parsed.tenant not in mine:
            # "/hitl pols": a lone word that is no verb was read as a tenant; say it is not understood.
            raise NotFound(unknown_word(parsed.tenant))
        if isinstance(command, cmd.Help):
            admin_of = tuple(t for t in mine if self.is_admin(t, user))
            return HelpAnswer(tuple(mine), admin_of, command.topic)
        if isinstance(command, cmd.Show) and parsed.tenant is None and len(mine) > 1:
            return await self._show_anywhere(mine, command.request_id)
        tenant = self._resolve(user, mine, parsed)
        if isinstance(command, cmd.Audit):
            return await audit.run(self.sessionmaker, self.clock.now(), tenant, command)
        if isinstance(command, PolicyEdit | PolicyRollback | PolicyDecide):
            return await policy_changes.run(self.changes, user, tenant, command)
        if isinstance(command, cmd.Delegate | cmd.DelegateOff):
            return await delegation.run(self.sessionmaker, self.clock.now(), user, tenant, command, person)
        if isinstance(command, cmd.CHANGES):
            if groups is not None:
                command = await pool_changes.expand(command, groups)
            return await pool_changes.run(self.sessionmaker, self.policies, self.clock, user, tenant, command)
        if isinstance(command, cmd.ListPools):
            return await self._pools(user, tenant)
        if isinstance(command, cmd.PoolShow):
            return await self._pool(tenant, command)
        if isinstance(command, cmd.Pending):
            return await self._pending(user, tenant, command.pool)
        if isinstance(command, cmd.Show):
            return await self._show(tenant, command.request_id)
        if isinstance(command, cmd.Stats):
            return await self._stats(tenant, command)
        if isinstance(command, cmd.PolicyShow):
            return PolicyAnswer(tenant, self.policies.get(tenant), command.action)
        if isinstance(command, cmd.WhoCan):
            return await self._whocan(tenant, command)
        assert isinstance(command, cmd.History)
        return await self._history(tenant)

    def _resolve(self, user: str, mine: list[str], parsed: cmd.Parsed) -> str:
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

    async def _pool(self, tenant: str, command: cmd.PoolShow) -> PoolAnswer:
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
            answered = (await AnswerRepository(tx.session).of([row.id])).get(row.id) if row.kind == QUESTION else None
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
            question=str(row.params.get("question", "")) if row.kind == QUESTION else None,
            answer=(answered.text, answered.user_id, answered.at) if answered is not None else None,
        )

    async def _stats(self, tenant: str, command: cmd.Stats) -> StatsAnswer:
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

    async def _whocan(self, tenant: str, command: cmd.WhoCan) -> WhoCanAnswer:
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


async def _undelivered_callback(
    tx: Tx, tenant: str, request_id: str, now: datetime
) -> tuple[str, int, str | None] | None:
    """The request's callback if it was tried and not delivered: retrying, or given up (failed)."""
    key = callback_key(request_id)
    for entry in await tx.outbox.inspect(now=now, tenant=tenant, dedupe_key=key, limit=1):
        if entry.attempts > 0:
            return entry.state.value, entry.attempts, entry.last_error
    return None
