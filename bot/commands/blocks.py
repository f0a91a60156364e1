"""Block Kit for ``/hitl`` answers and the App Home. Pure functions of the typed answers.

Slack's limits kept: 50 blocks in a message, 100 in a Home view, 3000 characters in a
section, 10 fields. Home queue buttons carry the same action ids and ``CardRef`` values as a
card's, so the card listeners handle a click from Home as one from a channel; each item's
actions block gets its own ``block_id`` (block ids must be unique within a view).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.blocks import STATUS_LINE, Block, card_buttons, cut, header, section, slack_date
from bot.commands.answers import (
    Answer,
    ChangeAnswer,
    ChangeLine,
    HelpAnswer,
    HistoryAnswer,
    HomeAnswer,
    PendingAnswer,
    PolicyAnswer,
    PoolAnswer,
    PoolInfo,
    PoolsAnswer,
    QueueItem,
    ShowAnswer,
    StatsAnswer,
    WhoCanAnswer,
)
from bot.commands.parse import USAGE
from bot.payloads import CardRef
from policy import Mode, Outcome, TenantPolicy
from policy.models import ActionRule
from policy.types import Risk, Status

MESSAGE_BLOCKS = 50
HOME_BLOCKS = 100
RISK_ICON = {Risk.LOW: ":white_circle:", Risk.MEDIUM: ":large_yellow_circle:", Risk.HIGH: ":large_orange_circle:",
             Risk.CRITICAL: ":red_circle:"}  # fmt: skip
MODE_WORDS = {
    Mode.SYNC: "sync (the agent waits for the decision)",
    Mode.ASYNC: "async (the decision is sent to the agent's callback)",
    Mode.SAMPLE: "sample (auto-approved; a sample is reviewed after the fact)",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """An ephemeral answer: the notification text and the blocks."""

    text: str
    blocks: list[Block]


# -- small builders ---------------------------------------------------------------------------


def _context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(t, 3000)} for t in texts[:10]]}


def _divider() -> Block:
    return {"type": "divider"}


def _date(at: datetime) -> str:
    return slack_date(at, "{date_short_pretty} {time}")


def duration(delta: timedelta) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``: two units at most."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h" + (f" {minutes % 60}m" if minutes % 60 else "")
    return f"{days}d" + (f" {hours % 24}h" if hours % 24 else "")


def _people(users: Iterable[str]) -> str:
    return ", ".join(f"<@{u}>" for u in users) or "_nobody_"


def _channel(channel: str | None) -> str:
    return f"<#{channel}>" if channel else "_no channel_"


_VOTE_ICON = {"approve": ":white_check_mark:", "reject": ":x:"}


def _field(title: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": cut(f"*{title}*\n{value}", 2000)}


def _actor(actor: str) -> str:
    return f"<@{actor}>" if actor[:1] in "UW" else actor


def _reply(text: str, blocks: list[Block]) -> Reply:
    if len(blocks) > MESSAGE_BLOCKS:
        blocks = [*blocks[: MESSAGE_BLOCKS - 1], _context(f"_…{len(blocks) - MESSAGE_BLOCKS + 1} more not shown_")]
    return Reply(cut(text, 3000), blocks)


# -- errors -----------------------------------------------------------------------------------


def refusal(message: str) -> Reply:
    """A request refused (permissions, not found...): says why."""
    return _reply(message, [section(f":no_entry_sign: {message}")])


def usage_error(message: str, usage: str | None) -> Reply:
    blocks = [section(f":thinking_face: {message}")]
    if usage:
        blocks.append(_context(f"Usage: `{usage}`  ·  all commands: `/hitl help`"))
    return _reply(message, blocks)


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
    blocks.append(_context(*notes))
    return _reply("/hitl commands", blocks)


def _pool_line(pool: PoolInfo) -> str:
    present = [m for m in pool.members if m not in pool.away]
    line = f"*{pool.name}* · {_channel(pool.channel)} · {len(pool.members)} member(s)"
    if pool.away:
        line += f", {len(pool.away)} away"
    line += f"\n{_people(present)}"
    if pool.away:
        line += f"  ·  away: {_people(pool.away)}"
    if pool.cannot_serve:
        line += f"\n:warning: cannot take requests: it {pool.cannot_serve}"
    return line


def pools_reply(answer: PoolsAnswer) -> Reply:
    blocks = [header(f"Reviewer pools of {answer.tenant}")]
    if not answer.pools:
        blocks.append(section("_No pools yet._"))
    blocks += [section(_pool_line(pool)) for pool in answer.pools]
    hint = "You are an admin: `/hitl pool create|add|remove|channel`." if answer.is_admin else ""
    blocks.append(_context(*(t for t in (hint, "Mark yourself away: `/hitl pool away <pool>`.") if t)))
    return _reply(f"{len(answer.pools)} pool(s) of {answer.tenant}", blocks)


def pool_reply(answer: PoolAnswer) -> Reply:
    title = f"Pool {answer.pool.name} ({answer.tenant})"
    blocks = [header(title)]
    if answer.at is not None:
        version = f" (config version {answer.version})" if answer.version is not None else ""
        blocks.append(_context(f":clock3: As it was at {_date(answer.at)}{version}"))
    blocks.append(section(_pool_line(answer.pool)))
    return _reply(title, blocks)


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
        blocks.append(_context(f"`{answer.tenant}` config version {answer.version} · audited · see `/hitl history`"))
    return _reply(answer.done or answer.unchanged or "Nothing to change.", blocks)


def _item_text(item: QueueItem) -> str:
    line = f"{RISK_ICON[item.risk]} *{item.summary}*\n`{item.action}` · *{item.tenant}*"
    if item.pool:
        line += f" · pool `{item.pool}`"
    line += f" · approvals {item.approvals} of {item.approvals_required}"
    if item.on_behalf_of:
        line += f" · on behalf of <@{item.on_behalf_of}>"
    return line


def _item_context(item: QueueItem, now: datetime) -> Block:
    parts = [f"{item.risk.value} risk", f"waiting {duration(now - item.created_at)}"]
    if item.deadline_at is not None:
        left = item.deadline_at - now
        parts.append(f"deadline in {duration(left)}" if left > timedelta(0) else "deadline passed")
    parts.append(f"`{item.request_id}`")
    return _context(" · ".join(parts))


def pending_reply(answer: PendingAnswer) -> Reply:
    where = f" in {answer.pool}" if answer.pool else ""
    blocks = [header(f"Pending requests of {answer.tenant}{where}")]
    if not answer.items:
        blocks.append(section("_Nothing is waiting for a decision._ :tada:"))
    for item in answer.items[:24]:
        text = _item_text(item)
        if item.can_vote:
            text += "\n:point_right: _you can vote on this one_"
        blocks += [section(text), _item_context(item, answer.now)]
    if len(answer.items) > 24:
        blocks.append(_context(f"_…and {len(answer.items) - 24} more_"))
    return _reply(f"{len(answer.items)} pending request(s) of {answer.tenant}{where}", blocks)


def show_reply(answer: ShowAnswer) -> Reply:
    status = STATUS_LINE.get(answer.status, ":hourglass_flowing_sand: *Pending*")
    blocks = [
        header(answer.summary),
        section(
            f"{status} · `{answer.action}` · *{answer.tenant}* · `{answer.request_id}`"
            + (f" · {answer.risk.value} risk" if answer.risk else "")
        ),
    ]
    approvals = sum(1 for _, choice, _ in answer.votes if choice == "approve")
    facts = [f"Asked {_date(answer.created_at)}", f"Approvals *{approvals} of {answer.approvals_required}*"]
    if answer.stages:
        chain = " → ".join(f"`{pool}` (until {_date(deadline)})" for pool, deadline in answer.stages)
        facts.append(f"Stages: {chain}")
    blocks.append(section("\n".join(facts)))
    if answer.votes:
        votes = [
            f"{_VOTE_ICON.get(choice, '')} <@{user}> {choice}d" + (f": {reason}" if reason else "")
            for user, choice, reason in answer.votes
        ]
        blocks.append(section("*Votes*\n" + "\n".join(votes)))
    if answer.status is not Status.PENDING and answer.decided_at is not None:
        by = f" by {_actor(answer.decided_by)}" if answer.decided_by else ""
        reason = f"\n>{answer.reason}" if answer.reason else ""
        blocks.append(section(f"*Decision*{by} {_date(answer.decided_at)}{reason}"))
    if answer.callback is not None:
        state, attempts, error = answer.callback
        said = "*failed*: given up" if state == "failed" else "not delivered yet: retrying"
        last = f"\n>Last error: {cut(error, 300)}" if error else ""
        blocks.append(section(f":warning: *Callback to the agent* {said} after {attempts} attempts.{last}"))
    trail = list(answer.trail)[-15:]
    if trail:
        lines = []
        for line in trail:
            actor = f" {_actor(line.actor)}" if line.actor else ""
            lines.append(f"`{line.at:%m-%d %H:%M:%S}` {line.kind}{actor} {cut(line.text, 200)}".rstrip())
        blocks.append(section("*Trail*\n" + "\n".join(lines)))
    return _reply(f"{answer.request_id}: {answer.status.value}", blocks)


def _latency(value: timedelta | None) -> str:
    return duration(value) if value is not None else "–"


def stats_reply(answer: StatsAnswer) -> Reply:
    blocks = [header(f"{answer.tenant}: the last {answer.label}"), _context(f"Since {_date(answer.since)}")]
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
        _context(
            f"All requests: {counts or 'none'}",
            "SLA breach: decided after the first stage's deadline, or expired. "
            "Decision time: from the ask to a reviewer's decision.",
        )
    )
    return _reply(f"{answer.tenant} stats for the last {answer.label}", blocks)


# -- policy in words -----------------------------------------------------------------------------


def _chain(policy: TenantPolicy, action: str) -> str:
    stages = policy.stages.get(action) or policy.stages.get("") or ()
    if not stages:
        return "_no pool configured: requests fail closed (rejected)_"
    return " → ".join(f"`{s.pool}` ({duration(s.timeout)})" for s in stages)


def _rule_words(policy: TenantPolicy, name: str, rule: ActionRule) -> list[str]:
    defaults = policy.manifest.defaults
    lines = [f"*{name}*" + (f" — {rule.description}" if rule.description else "")]
    if not rule.approval_required:
        lines.append("Never asks (approval_required: false); still audited.")
        return lines
    condition = rule.condition_source
    lines.append(f"Asks when `{condition}`; otherwise auto-approved." if condition else "Always asks.")
    if rule.effective_mode is Mode.SAMPLE:
        lines.append(f"Mode: sample at {int((rule.sample_rate or 0) * 100)}% — auto-approved, reviewed after the fact.")
    else:
        lines.append(f"Chain: {_chain(policy, name)}")
        approvals = rule.required_approvals
        lines.append(
            f"Approvals: {approvals} ({'distinct people' if approvals > 1 else 'one person'}); one rejection rejects."
        )
        mode = MODE_WORDS[rule.effective_mode]
        if rule.max_pending:
            mode += f"; at most {rule.max_pending} undecided per workflow, then the next one waits"
        lines.append(f"Mode: {mode}.")
        on_timeout = (rule.on_timeout or defaults.on_timeout).value
        lines.append(f"If nobody decides in time: {on_timeout}.")
    lines.append(f"Undo on rejection: `{rule.undo_operation}`." if rule.undo_operation else "Undo on rejection: none.")
    if rule.sensitive:
        lines.append(f"Sensitive (never shown in Slack): {', '.join(f'`{s}`' for s in rule.sensitive)}.")
    lines.append(f"Risk: {rule.risk.value}.")
    return lines


def _rule_summary(policy: TenantPolicy, name: str, rule: ActionRule) -> str:
    if not rule.approval_required:
        return f"• `{name}`: never asks"
    when = f"when `{rule.condition_source}`" if rule.condition_source else "always"
    if rule.effective_mode is Mode.SAMPLE:
        return f"• `{name}`: sampled ({int((rule.sample_rate or 0) * 100)}%) for review after the fact"
    stages = policy.stages.get(name) or ()
    pool = f"`{stages[0].pool}`" if stages else "_no pool_"
    n = rule.required_approvals
    return f"• `{name}`: asks {when} → {pool}, {n} approval{'s' if n > 1 else ''}, {rule.effective_mode.value}"


def policy_reply(answer: PolicyAnswer) -> Reply:
    policy = answer.policy
    manifest = policy.manifest
    defaults = manifest.defaults
    unknown = (
        "refused (unknown_action: deny)"
        if defaults.unknown_action.value == "deny"
        else f"reviewed by {_chain(policy, '')}"
    )
    if answer.action is None:
        lines = [_rule_summary(policy, name, rule) for name, rule in sorted(manifest.actions.items())]
        blocks = [
            header(f"Policy of {answer.tenant}"),
            section("\n".join(lines) or "_No actions named._"),
            _context(
                f"Any other action: {unknown}.",
                f"Defaults: timeout {duration(defaults.timeout)}, on timeout {defaults.on_timeout.value}.",
                "Details: `/hitl policy <action>` · dry run: `/hitl whocan <action> key=value`",
            ),
        ]
        return _reply(f"Policy of {answer.tenant}", blocks)
    rule = manifest.actions.get(answer.action)
    if rule is None:
        text = f"`{answer.action}` is not in `{answer.tenant}`'s manifest. Any action it does not name is {unknown}."
        return _reply(text, [section(text)])
    words = "\n".join(_rule_words(policy, answer.action, rule))
    return _reply(f"{answer.action} in {answer.tenant}", [section(words)])


def whocan_reply(answer: WhoCanAnswer) -> Reply:
    verdict = answer.verdict
    params = ", ".join(f"{k}={v}" for k, v in answer.params.items()) or "no params"
    blocks = [header(f"Dry run: {answer.action}"), _context(f"*{answer.tenant}* · {cut(params, 500)}")]
    if verdict.outcome is Outcome.AUTO_APPROVE:
        text = f":white_check_mark: *Auto-approved*: {verdict.reason}."
        if verdict.mode is Mode.SAMPLE:
            text += " (A sample of these is posted for review after the fact.)"
        blocks.append(section(text))
        return _reply(f"{answer.action}: auto-approved", blocks)
    if verdict.outcome is Outcome.DENY:
        blocks.append(section(f":no_entry: *Denied*: {verdict.reason}."))
        return _reply(f"{answer.action}: denied", blocks)
    plan = answer.route
    assert plan is not None
    lines = [f":raised_hand: *Needs review*: {verdict.reason}."]
    if plan.fails_closed:
        lines.append(f":x: No pool can serve it, so it would be *rejected at once*: {plan.explain() or 'no pool'}.")
    for i, stage in enumerate(plan.stages):
        who = _people(answer.people.get(stage.pool, ()))
        step = "First" if i == 0 else "Then"
        lines.append(
            f"{step} `{stage.pool}` in {_channel(answer.channels.get(stage.pool))} for {duration(stage.timeout)}: {who}"
        )
    for skipped in plan.skipped:
        lines.append(f":fast_forward: skipped `{skipped.pool}`: it {skipped.why}")
    n = verdict.approvals
    lines.append(
        f"Needs {n} approval{'s' if n > 1 else ''}; {MODE_WORDS[verdict.mode]}; "
        f"if nobody decides: {verdict.on_timeout.value}."
    )
    if answer.on_behalf_of:
        lines.append(f"<@{answer.on_behalf_of}> is the person acted for, so cannot vote.")
    if verdict.sensitive:
        lines.append(f"Hidden in Slack: {', '.join(f'`{s}`' for s in verdict.sensitive)}.")
    blocks.append(section("\n".join(lines)))
    return _reply(f"{answer.action}: needs review", blocks)


def change_words(change: ChangeLine) -> str:
    """One config change in words."""
    payload: Mapping[str, Any] = change.payload
    pool = f"`{change.pool}`"
    users = _people(payload.get("users") or [])
    if change.kind == "manifest.load":
        return f"loaded pools {', '.join(f'`{p}`' for p in sorted(payload.get('pools', {})))} from the manifest"
    if change.kind == "pool.create":
        members = payload.get("members") or []
        return f"created {pool} in {_channel(payload.get('channel'))} with {_people(members)}"
    if change.kind == "pool.add":
        return f"added {users} to {pool}"
    if change.kind == "pool.remove":
        return f"removed {users} from {pool}"
    if change.kind == "pool.channel":
        return f"pointed {pool} at {_channel(payload.get('channel'))}"
    if change.kind == "pool.away":
        return f"marked {users} away in {pool}"
    if change.kind == "pool.back":
        return f"marked {users} back in {pool}"
    return f"{change.kind} {pool}"


def history_reply(answer: HistoryAnswer) -> Reply:
    blocks = [header(f"Configuration history of {answer.tenant}")]
    if not answer.changes:
        blocks.append(section("_No changes yet._"))
    lines = []
    for change in answer.changes:
        actor = _actor(change.actor) if change.actor else "someone"
        lines.append(f"*v{change.version}* · {_date(change.at)} · {actor} {change_words(change)}")
    # Several sections: one section holds 3000 characters.
    for start in range(0, len(lines), 10):
        blocks.append(section("\n".join(lines[start : start + 10])))
    if answer.total > len(answer.changes):
        blocks.append(_context(f"The last {len(answer.changes)} of {answer.total} changes; all are in the audit log."))
    return _reply(f"{answer.total} config change(s) of {answer.tenant}", blocks)


# -- App Home ---------------------------------------------------------------------------------


def home_block_id(request_id: str) -> str:
    return f"countersign.home.{request_id}"[:255]


def home_view(answer: HomeAnswer) -> Block:
    """The Home tab: the person's queue (with the card's buttons), their pools and away state."""
    blocks: list[Block] = [header("Your review queue")]
    if not answer.tenants:
        blocks.append(section("You are not in any reviewer pool yet. A tenant admin can add you: `/hitl pool add`."))
    elif not answer.items:
        blocks.append(section("_Nothing waits for your vote._ :tada:"))
    else:
        blocks.append(_context("Highest risk first, then oldest. Requests you may vote on now, across your pools."))
    for item in answer.items:
        ref = CardRef(t=item.tenant, r=item.request_id)
        blocks += [
            section(_item_text(item)),
            _item_context(item, answer.now),
            {
                "type": "actions",
                "block_id": home_block_id(item.request_id),
                "elements": card_buttons(ref),
            },
        ]
    if answer.more:
        blocks.append(_context(f"_…and {answer.more} more: `/hitl pending`_"))
    blocks += [_divider(), header("Your pools")]
    lines = _membership_lines(answer)
    blocks.append(section("\n".join(lines) if lines else "_None._"))
    blocks.append(
        _context(
            f"Updated {_date(answer.now)} · "
            "`/hitl pool away <pool>` when you are out, `/hitl pool back <pool>` on return"
        )
    )
    return {"type": "home", "blocks": blocks[:HOME_BLOCKS]}


def _membership_lines(answer: HomeAnswer) -> Sequence[str]:
    lines = []
    for m in answer.memberships:
        state = ":palm_tree: away" if m.away else ":large_green_circle: available"
        lines.append(f"`{m.pool}` · *{m.tenant}* · {state}")
    for tenant in answer.admin_of:
        lines.append(f":key: admin of *{tenant}*")
    return lines
