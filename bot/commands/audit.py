"""``/hitl audit [action:NAME] [by:@person] [outcome:rejected] [since:7d]``: the tenant's audit trail,
newest first, a page at a time; also behind the App Home's audit view.

Paging is a command line too: the "Older" button carries the same filters and ``before:SEQ`` (the
oldest event shown), so a page is judged, like any command, against who asks it now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands.command import Audit
from bot.commands.parse import CommandError, parse_time, user_id
from bot.reviewblocks import TrailLine
from bot.service import render
from policy import Status
from policy.durations import parse_duration
from store.audit import AuditFilter, query_audit
from store.uow import uow

USAGE = "/hitl audit [action:<action>] [by:@person] [outcome:approved|rejected|expired|…] [since:7d|2026-12-01]"
PAGE = 20
OUTCOMES = ", ".join(s.value for s in Status if s is not Status.PENDING)


@dataclass(frozen=True, slots=True)
class AuditAnswer:
    tenant: str
    command: Audit
    lines: tuple[tuple[int | None, str | None, TrailLine], ...]  # (seq, request id, the event in words)
    older: int | None  # the next page's ``before``; None: this is the start of the trail


def parse_audit(args: list[str]) -> Audit:
    """``key:value`` words, each at most once. Raises CommandError."""
    found: dict[str, str] = {}
    for word in args:
        key, sep, value = word.partition(":")
        key = key.lower()
        if not sep or not value or key not in ("action", "by", "outcome", "since", "before"):
            raise CommandError(f"I don't know `{word[:40]}` here; filter with key:value words.", USAGE)
        if key in found:
            raise CommandError(f"`{key}:` is given twice.", USAGE)
        found[key] = value
    by = None
    if "by" in found and (by := user_id(found["by"])) is None:
        raise CommandError(f"`{found['by'][:40]}` is not a person: pick them from Slack's @ list.", USAGE)
    outcome = None
    if "outcome" in found:
        try:
            outcome = Status(found["outcome"].lower())
        except ValueError:
            raise CommandError(f"`{found['outcome'][:40]}` is not an outcome; one of {OUTCOMES}.", USAGE) from None
    if "since" in found:
        since_of(found["since"], datetime.now().astimezone())  # refuse it now, not when run
    before = found.get("before")
    if before is not None and not before.isdigit():
        raise CommandError(f"`before:{before[:40]}` is not an event number.", USAGE)
    return Audit(found.get("action"), by, outcome, found.get("since"), int(before) if before else None)


def since_of(text: str, now: datetime) -> datetime:
    """``7d`` before ``now``, or an ISO date/time (UTC when it has no zone). Raises CommandError."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except CommandError:
        raise CommandError(f"`since:{text[:40]}` is neither a duration (7d, 24h) nor a date.", USAGE) from None


async def run(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, tenant: str, command: Audit
) -> AuditAnswer:
    since = since_of(command.since, now) if command.since else None
    where = AuditFilter(action=command.action, actor=command.by, outcome=command.outcome, since=since)
    async with uow(sessionmaker, read_only=True) as tx:
        page = await query_audit(tx.session, tenant, where, limit=PAGE, before=command.before)
    words = render.trail(page.events)
    lines = tuple((e.seq, e.request_id, line) for e, line in zip(page.events, words, strict=True))
    return AuditAnswer(tenant, command, lines, page.older)
