"""Block Kit for ``/hitl`` answers. Pure functions of the typed answers.

Slack's limits kept: 50 blocks in a message (:mod:`bot.commands.reply`), 3000 characters in a
section, 10 fields. ``/hitl policy`` and ``whocan`` are put in words by :mod:`bot.commands.policy_blocks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date as day
from datetime import datetime, timedelta
from typing import Any

from bot.blocks import STATUS_LINE, Block, cut, header, section
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
    ShowAnswer,
    StatsAnswer,
    WhoCanAnswer,
)
from bot.commands.audit import AuditAnswer
from bot.commands.audit_blocks import audit_reply
from bot.commands.parse import USAGE
from bot.commands.policy_blocks import policy_reply, whocan_reply
from bot.commands.policy_changes import PolicyChangeAnswer, policy_change_reply
from bot.commands.reply import Reply, actor_text, channel, people, reply
from bot.queue import context, date, duration, item_context, item_text
from policy.types import Status

# -- small builders ---------------------------------------------------------------------------

_VOTE_ICON = {"approve": ":white_check_mark:", "reject": ":x:"}


def _field(title: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": cut(f"*{title}*\n{value}", 2000)}


# -- errors -----------------------------------------------------------------------------------


def refusal(message: str) -> Reply:
    """A request refused (permissions, not found...): says why."""
    return reply(message, [section(f":no_entry_sign: {message}")])


def usage_error(message: str, usage: str | None) -> Reply:
    blocks = [section(f":thinking_face: {message}")]
    if usage:
        blocks.append(context(f"Usage: `{usage}`  ·  all commands: `/hitl help`"))
    return reply(message, blocks)


# -- answers ----------------------------------------------------------------------------------


def render(answer: Answer) -> Reply:
    """The Block Kit reply for any ``/hitl`` answer."""
    if isinstance(answer, HelpAnswer):
        return help_reply(answer)
    if isinstance(answer, PoolsAnswer):
        return pools_reply(answer)
    if isinstance(answer, PoolAnswer):
        return pool_reply(answer)
    if isinstance(answer, ChangeAnswer):
        return change_reply(answer)
    if isinstance(answer, PendingAnswer):
        return pending_reply(answer)
    if isinstance(answer, ShowAnswer):
        return show_reply(answer)
    if isinstance(answer, StatsAnswer):
        return stats_reply(answer)
    if isinstance(answer, PolicyAnswer):
        return policy_reply(answer)
    if isinstance(answer, WhoCanAnswer):
        return whocan_reply(answer)
    if isinstance(answer, AuditAnswer):
        return audit_reply(answer)
    if isinstance(answer, PolicyChangeAnswer):
        return policy_change_reply(answer)
    return history_reply(answer)


def help_reply(answer: HelpAnswer) -> Reply:
    lines = [f"`{usage}`" for usage in USAGE.values()]
    blocks = [header("Countersign: /hitl"), section("\n".join(lines))]
    notes = []
    if len(answer.tenants) > 1:
        notes.append(
            f"You belong to several tenants ({', '.join(f'`{t}`' for t in answer.tenants)}): "
            f"put the tenant first, e.g. `/hitl {answer.tenants[0]} pools`."
        )
    elif answer.tenants:
        notes.append(f"Your tenant: `{answer.tenants[0]}`.")
    else:
        notes.append("You are not part of any tenant yet: a tenant admin can add you to a reviewer pool.")
    if answer.admin_of:
        notes.append(f"You are an admin of {', '.join(f'`{t}`' for t in answer.admin_of)}: you can change its pools.")
    else:
        notes.append("Only tenant admins change pools; any member can mark themselves away or back.")
    blocks.append(context(*notes))
    return reply("/hitl commands", blocks)


def _pool_line(pool: PoolInfo) -> str:
    present = [m for m in pool.members if m not in pool.away]
    line = f"*{pool.name}* · {channel(pool.channel)} · {len(pool.members)} member(s)"
    if pool.away:
        line += f", {len(pool.away)} away"
    line += f"\n{people(present)}"
    if pool.away:
        line += f"  ·  away: {people(pool.away)}"
    if pool.stand_ins:
        line += "  ·  standing in: " + ", ".join(f"<@{by}> for <@{who}>" for who, by in pool.stand_ins)
    if pool.cannot_serve:
        line += f"\n:warning: cannot take requests: it {pool.cannot_serve}"
    return line


def pools_reply(answer: PoolsAnswer) -> Reply:
    blocks = [header(f"Reviewer pools of {answer.tenant}")]
    if not answer.pools:
        blocks.append(section("_No pools yet._"))
    blocks += [section(_pool_line(pool)) for pool in answer.pools]
    if answer.delegations:
        lines = [f"<@{by}> votes for <@{who}> {until_words(until)}" for who, by, until in answer.delegations]
        blocks.append(section(cut("*Delegations in force*\n" + "\n".join(lines), 3000)))
    hint = "You are an admin: `/hitl pool create|add|remove|channel`." if answer.is_admin else ""
    blocks.append(context(*(t for t in (hint, "Mark yourself away: `/hitl pool away <pool>`.") if t)))
    return reply(f"{len(answer.pools)} pool(s) of {answer.tenant}", blocks)


def pool_reply(answer: PoolAnswer) -> Reply:
    title = f"Pool {answer.pool.name} ({answer.tenant})"
    blocks = [header(title)]
    if answer.at is not None:
        version = f" (config version {answer.version})" if answer.version is not None else ""
        blocks.append(context(f":clock3: As it was at {date(answer.at)}{version}"))
    blocks.append(section(_pool_line(answer.pool)))
    return reply(title, blocks)


def change_reply(answer: ChangeAnswer) -> Reply:
    lines = []
    if answer.done:
        lines.append(f":white_check_mark: {answer.done}")
    if answer.unchanged:
        lines.append(f":information_source: {answer.unchanged}")
    if not lines:
        lines.append(":information_source: Nothing to change.")
    blocks = [section("\n".join(lines))]
    if answer.version is not None:
        blocks.append(context(f"`{answer.tenant}` config version {answer.version} · audited · see `/hitl history`"))
    return reply(answer.done or answer.unchanged or "Nothing to change.", blocks)


def pending_reply(answer: PendingAnswer) -> Reply:
    where = f" in {answer.pool}" if answer.pool else ""
    blocks = [header(f"Pending requests of {answer.tenant}{where}")]
    if not answer.items:
        blocks.append(section("_Nothing is waiting for a decision._ :tada:"))
    for item in answer.items[:24]:
        text = item_text(item)
        if item.can_vote:
            text += "\n:point_right: _you can vote on this one_"
        blocks += [section(text), item_context(item, answer.now)]
    if len(answer.items) > 24:
        blocks.append(context(f"_…and {len(answer.items) - 24} more_"))
    return reply(f"{len(answer.items)} pending request(s) of {answer.tenant}{where}", blocks)


# Statuses only a question reaches (answered), or that read otherwise for one.
SHOWN_STATUS = {Status.ANSWERED: ":speech_balloon: *Answered*"}


def show_reply(answer: ShowAnswer) -> Reply:
    status = SHOWN_STATUS.get(answer.status) or STATUS_LINE.get(answer.status, ":hourglass_flowing_sand: *Pending*")
    what = "question" if answer.question is not None else f"`{answer.action}`"
    blocks = [
        header(cut(answer.question or answer.summary, 150)),
        section(
            f"{status} · {what} · *{answer.tenant}* · `{answer.request_id}`"
            + (f" · {answer.risk.value} risk" if answer.risk and answer.question is None else "")
        ),
    ]
    approvals = sum(1 for _, choice, _ in answer.votes if choice == "approve")
    facts = [f"Asked {date(answer.created_at)}"]
    if answer.question is None:
        facts.append(f"Approvals *{approvals} of {answer.approvals_required}*")
    elif answer.answer is not None:
        text, by, at = answer.answer
        facts.append(f"*Answer* by {actor_text(by)} {date(at)}\n>{cut(text, 2000)}")
    if answer.stages:
        chain = " → ".join(f"`{pool}` (until {date(deadline)})" for pool, deadline in answer.stages)
        facts.append(f"Stages: {chain}")
    blocks.append(section("\n".join(facts)))
    if answer.votes:
        votes = [
            f"{_VOTE_ICON.get(choice, '')} <@{user}> {choice}d" + (f": {reason}" if reason else "")
            for user, choice, reason in answer.votes
        ]
        blocks.append(section("*Votes*\n" + "\n".join(votes)))
    if answer.status is not Status.PENDING and answer.decided_at is not None and answer.answer is None:
        by = f" by {actor_text(answer.decided_by)}" if answer.decided_by else ""
        reason = f"\n>{answer.reason}" if answer.reason else ""
        blocks.append(section(f"*Decision*{by} {date(answer.decided_at)}{reason}"))
    if answer.callback is not None:
        state, attempts, error = answer.callback
        said = "*failed*: given up" if state == "failed" else "not delivered yet: retrying"
        last = f"\n>Last error: {cut(error, 300)}" if error else ""
        blocks.append(section(f":warning: *Callback to the agent* {said} after {attempts} attempts.{last}"))
    if answer.reveals:
        # Listed apart from the trail (which keeps its last 15 events): who has seen which masked field.
        seen = [
            f"`{at:%m-%d %H:%M:%S}` {actor_text(user or '?')} revealed `{field}`"
            for at, user, field in answer.reveals[-20:]
        ]
        more = len(answer.reveals) - len(seen)
        blocks.append(section("*Reveals*\n" + (f"_…{more} earlier_\n" if more else "") + "\n".join(seen)))
    trail = list(answer.trail)[-15:]
    if trail:
        lines = []
        for line in trail:
            actor = f" {actor_text(line.actor)}" if line.actor else ""
            lines.append(f"`{line.at:%m-%d %H:%M:%S}` {line.kind}{actor} {cut(line.text, 200)}".rstrip())
        blocks.append(section("*Trail*\n" + "\n".join(lines)))
    return reply(f"{answer.request_id}: {answer.status.value}", blocks)


def _latency(value: timedelta | None) -> str:
    return duration(value) if value is not None else "–"


def stats_reply(answer: StatsAnswer) -> Reply:
    blocks = [header(f"{answer.tenant}: the last {answer.label}"), context(f"Since {date(answer.since)}")]
    if not answer.pools:
        blocks.append(section("_No reviewed requests in this window._"))
    for s in answer.pools:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{s.pool}* · {s.requests} request(s)"},
                "fields": [
                    _field("Approved / rejected / timed out", f"{s.approved} / {s.rejected} / {s.timed_out}"),
                    _field("Pending", str(s.pending)),
                    _field("Decision time p50 / p95", f"{_latency(s.p50)} / {_latency(s.p95)}"),
                    _field("SLA breaches", str(s.sla_breaches)),
                    _field("Escalations", str(s.escalations)),
                ],
            }
        )
    counts = ", ".join(f"{n} {status.value.replace('_', '-')}" for status, n in sorted(answer.by_status.items()))
    blocks.append(
        context(
            f"All requests: {counts or 'none'}",
            "SLA breach: decided after the first stage's deadline, or expired. "
            "Decision time: from the ask to a reviewer's decision.",
        )
    )
    return reply(f"{answer.tenant} stats for the last {answer.label}", blocks)


def change_words(change: ChangeLine) -> str:
    """One config change in words."""
    payload: Mapping[str, Any] = change.payload
    pool = f"`{change.pool}`"
    users = people(payload.get("users") or [])
    if change.kind == "manifest.load":
        return f"loaded pools {', '.join(f'`{p}`' for p in sorted(payload.get('pools', {})))} from the manifest"
    if change.kind == "pool.create":
        members = payload.get("members") or []
        return f"created {pool} in {channel(payload.get('channel'))} with {people(members)}"
    if change.kind == "pool.add":
        return f"added {users} to {pool}"
    if change.kind == "pool.remove":
        return f"removed {users} from {pool}"
    if change.kind == "pool.channel":
        return f"pointed {pool} at {channel(payload.get('channel'))}"
    if change.kind == "pool.away":
        return f"marked {users} away in {pool}"
    if change.kind == "pool.back":
        return f"marked {users} back in {pool}"
    if change.kind == "delegation.set":
        until = datetime.fromisoformat(payload["until"]) if payload.get("until") else None
        return f"handed <@{payload.get('delegator')}>'s vote to <@{payload.get('delegate')}> {until_words(until)}"
    if change.kind == "delegation.off":
        return f"ended <@{payload.get('delegator')}>'s delegation to <@{payload.get('delegate')}>"
    return f"{change.kind} {pool}"


def last_day(until: datetime) -> day:
    """The last day a delegation is in force (``until`` is the start of the day after, UTC)."""
    return (until - timedelta(microseconds=1)).date()


def until_words(until: datetime | None) -> str:
    return f"until the end of {last_day(until).isoformat()} (UTC)" if until else "until `/hitl delegate off`"


def history_reply(answer: HistoryAnswer) -> Reply:
    blocks = [header(f"Configuration history of {answer.tenant}")]
    if not answer.changes:
        blocks.append(section("_No changes yet._"))
    lines = []
    for change in answer.changes:
        actor = actor_text(change.actor) if change.actor else "someone"
        lines.append(f"*v{change.version}* · {date(change.at)} · {actor} {change_words(change)}")
    # Several sections: one section holds 3000 characters.
    for start in range(0, len(lines), 10):
        blocks.append(section("\n".join(lines[start : start + 10])))
    if answer.total > len(answer.changes):
        blocks.append(context(f"The last {len(answer.changes)} of {answer.total} changes; all are in the audit log."))
    return reply(f"{answer.total} config change(s) of {answer.tenant}", blocks)
