"""``/hitl pool create|add|remove|channel|away|back``: the changes to a tenant's pools.

Admins change pools; anyone may mark themselves away or back in a pool they are a member of. Every
change goes through :class:`store.pools.PoolRepository`, which versions and audits it in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import queue
from bot.clock import Clock
from bot.commands.answers import ChangeAnswer
from bot.commands.command import Command, PoolAdd, PoolAway, PoolChannel, PoolCreate, PoolRemove, Targets
from bot.errors import Conflict, Forbidden, NotFound
from bot.policyset import PolicySet
from store import errors as store_errors
from store.models import Tenant
from store.uow import Tx, uow

# Expands a Slack user group (``<!subteam^S…>``) to its members; supplied by the Slack edge.
GroupMembers = Callable[[str], Awaitable[Sequence[str]]]


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    policies: PolicySet,
    clock: Clock,
    user: str,
    tenant: str,
    command: Command,
) -> ChangeAnswer:
    """Apply a pool change for ``user`` (the command's user groups already expanded: :func:`expand`).

    Raises:
        Forbidden: not an admin (or, for away/back, marking someone else, or not a member of the pool).
        NotFound: no such pool in the tenant.
        Conflict: a pool of that name already exists.
    """
    admin = queue.is_admin(policies, tenant, user)
    if isinstance(command, PoolAway):
        targets = command.members.users or (user,)
        if not admin and set(targets) != {user}:
            raise Forbidden(
                f"Only `{tenant}`'s admins can mark other people away or back. "
                f"To mark yourself: `/hitl pool {'away' if command.away else 'back'} {command.pool}`."
            )
        return await _away(sessionmaker, clock, user, tenant, command.pool, targets, command.away, admin)
    if not admin:
        raise Forbidden(
            f"Only `{tenant}`'s admins ({_people(policies.get(tenant).manifest.admins)}) can change pools. "
            "You can mark yourself away or back: `/hitl pool away <pool>`."
        )
    now = clock.now()
    try:
        async with uow(sessionmaker) as tx:
            answer = await _apply(tx, user, tenant, command, now)
            if answer.done:
                answer = replace(answer, version=await _version(tx, tenant))
    except store_errors.PoolExists as exc:
        raise Conflict(f"`{tenant}` already has a pool `{getattr(command, 'pool', '?')}`.") from exc
    except store_errors.NotFound as exc:
        raise NotFound(f"`{tenant}` has no pool `{getattr(command, 'pool', '?')}`. See `/hitl pools`.") from exc
    return answer


async def _apply(tx: Tx, user: str, tenant: str, command: Command, now: datetime) -> ChangeAnswer:
    if isinstance(command, PoolCreate):
        users = command.members.users
        await tx.pools.create(tenant, command.pool, now=now, actor=user, channel=command.channel, members=users)
        where = f" in <#{command.channel}>" if command.channel else " (no channel yet: `/hitl pool channel`)"
        who = f" with {_people(users)}" if users else " with no members yet (`/hitl pool add`)"
        return ChangeAnswer(tenant, command.pool, f"Created pool `{command.pool}`{where}{who}.")
    if isinstance(command, PoolAdd):
        users = command.members.users
        added = await tx.pools.add_members(tenant, command.pool, users, now=now, actor=user)
        already = [u for u in users if u not in added]
        return ChangeAnswer(
            tenant,
            command.pool,
            f"Added {_people(added)} to `{command.pool}`." if added else "",
            f"Already members: {_people(already)}." if already else "",
        )
    if isinstance(command, PoolRemove):
        users = command.members.users
        removed = await tx.pools.remove_members(tenant, command.pool, users, now=now, actor=user)
        absent = [u for u in users if u not in removed]
        return ChangeAnswer(
            tenant,
            command.pool,
            f"Removed {_people(removed)} from `{command.pool}`." if removed else "",
            f"Not members: {_people(absent)}." if absent else "",
        )
    assert isinstance(command, PoolChannel)
    await tx.pools.set_channel(tenant, command.pool, command.channel, now=now, actor=user)
    where = f"<#{command.channel}>" if command.channel else "no channel (it cannot take requests)"
    return ChangeAnswer(tenant, command.pool, f"Pool `{command.pool}` now posts to {where}.")


async def _away(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    user: str,
    tenant: str,
    pool: str,
    targets: Sequence[str],
    away: bool,
    admin: bool,
) -> ChangeAnswer:
    now = clock.now()
    word = "away" if away else "back"
    async with uow(sessionmaker) as tx:
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


async def expand(command: Command, groups: GroupMembers) -> Command:
    """Replace user groups named in a change by their members (asked of Slack at the edge)."""
    if not isinstance(command, PoolCreate | PoolAdd | PoolRemove | PoolAway) or not command.members.groups:
        return command
    users = list(command.members.users)
    for group in command.members.groups:
        users += await groups(group)
    return replace(command, members=Targets(tuple(dict.fromkeys(users))))


async def _version(tx: Tx, tenant: str) -> int | None:
    row = await tx.session.get(Tenant, tenant, populate_existing=True)
    return row.config_version if row else None


def _people(users: Sequence[str], *, me: str | None = None) -> str:
    return ", ".join("you" if u == me else f"<@{u}>" for u in users) or "nobody"
