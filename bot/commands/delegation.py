"""``/hitl delegate``: while you are away, someone votes for you in your pools.

Decisions (README, "Delegation"):

- a delegation is in force from when it is set until the end of its ``until`` day (UTC), or until
  ``/hitl delegate off``; while it is in force the delegator counts as away in every pool;
- the delegate is eligible in the delegator's pools with the same rules (never for a request made on
  their own behalf, nor, since they act for the delegator, on the delegator's);
- a delegate and their delegator are one vote (``policy.votes``);
- refused, with why, and audited (``delegation.refused``): to yourself, to a bot or someone not in the
  workspace, to someone who has delegated themselves, by someone others have delegated to (no chains),
  an ``until`` already past, or by someone in none of the tenant's pools (no vote to hand over).

Setting and ending one are versioned config changes (:mod:`store.delegations`), seen in ``/hitl history``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands.answers import ChangeAnswer
from bot.commands.blocks import until_words
from bot.commands.command import Delegate, DelegateOff
from bot.errors import Conflict, Forbidden
from store.delegations import DelegationRefused
from store.models import Tenant
from store.uow import Tx, uow

# Why a user id is not a person who could vote ("a bot", "not in this workspace"), or None; asked of Slack.
PersonCheck = Callable[[str], Awaitable[str | None]]


def until_of(day: Delegate) -> datetime | None:
    """The end of the named day, UTC (the first instant it is no longer in force)."""
    if day.until is None:
        return None
    return datetime.combine(day.until + timedelta(days=1), time(), tzinfo=UTC)


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    user: str,
    tenant: str,
    command: Delegate | DelegateOff,
    person: PersonCheck | None,
) -> ChangeAnswer:
    """Set or end ``user``'s delegation in ``tenant``.

    Raises:
        Forbidden: the delegation is refused (and audited); the message says why.
        Conflict: a chain (the delegate has delegated, or someone has delegated to ``user``).
    """
    try:
        return await _apply(sessionmaker, now, user, tenant, command, person)
    except (Forbidden, Conflict) as exc:
        async with uow(sessionmaker) as tx:
            payload = {"why": exc.user_message, **_named(command)}
            await tx.audit.append(tenant, "delegation.refused", now=now, actor=user, payload=payload)
        raise


async def _apply(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    user: str,
    tenant: str,
    command: Delegate | DelegateOff,
    person: PersonCheck | None,
) -> ChangeAnswer:
    if isinstance(command, Delegate):
        # Checked before any database work: none of these depends on what is stored.
        if command.delegate == user:
            raise Forbidden("You cannot delegate to yourself: name someone who will be here while you are away.")
        until = until_of(command)
        if until is not None and until <= now:
            raise Forbidden(f"{command.until} has already passed (UTC): name a day from today on.")
        why = await person(command.delegate) if person is not None else None
        if why:
            raise Forbidden(f"<@{command.delegate}> cannot vote for you: {why}.")
    async with uow(sessionmaker) as tx:
        views = await tx.pools.views(tenant)
        mine = sorted(name for name, view in views.items() if user in view.members)
        if not mine:
            raise Forbidden(f"You are in none of `{tenant}`'s pools, so you have no vote to hand over.")
        if isinstance(command, DelegateOff):
            ended = await tx.delegations.end(tenant, user, now=now, actor=user)
            if ended is None:
                return ChangeAnswer(tenant, "", "", "You have no delegation in force.")
            done = f"<@{ended.delegate}> no longer votes for you; you are back in {_pools(mine)}."
            return ChangeAnswer(tenant, "", done, "", await _version(tx, tenant))
        until = until_of(command)
        try:
            previous = await tx.delegations.set(tenant, user, command.delegate, until=until, now=now, actor=user)
        except DelegationRefused as exc:
            raise Conflict(await _chain(tx, tenant, user, command.delegate, now)) from exc
        version = await _version(tx, tenant)
    done = (
        f"<@{command.delegate}> votes for you in {_pools(mine)} {until_words(until)}; "
        "meanwhile you count as away there (you may still vote: you two count as one)."
    )
    replaced = ""
    if previous is not None and previous.delegate != command.delegate:
        replaced = f"It replaces your delegation to <@{previous.delegate}>."
    return ChangeAnswer(tenant, "", done, replaced, version)


async def _chain(tx: Tx, tenant: str, user: str, delegate: str, now: datetime) -> str:
    """Why a delegation would make a chain, in words (read inside the refused transaction)."""
    current = {d.delegator: d for d in await tx.delegations.in_force(tenant, now)}
    if delegate in current:
        return (
            f"<@{delegate}> is away too and has delegated to <@{current[delegate].delegate}>: "
            "delegations do not chain, so name someone who is here."
        )
    others = sorted(d.delegator for d in current.values() if d.delegate == user)
    names = ", ".join(f"<@{o}>" for o in others) or "someone"
    return (
        f"{names} delegated to you: delegations do not chain, so you cannot hand that on. "
        "They can delegate to someone else, or end theirs with `/hitl delegate off`."
    )


def _pools(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _named(command: Delegate | DelegateOff) -> dict[str, str | None]:
    if isinstance(command, DelegateOff):
        return {"off": "true"}
    return {"delegate": command.delegate, "until": command.until.isoformat() if command.until else None}


async def _version(tx: Tx, tenant: str) -> int | None:
    row = await tx.session.get(Tenant, tenant, populate_existing=True)
    return row.config_version if row else None
