"""Block Kit builders and every user-facing string of the cards. Pure functions of their inputs.
What a reviewer sees besides the card (Details, refusals, reveals) is in :mod:`bot.reviewblocks`.

Limits kept (Slack answers ``invalid_blocks`` past them): header 150 chars, section text
3000, at most 10 fields of 2000, button text 75, button value 2000, modal title 24.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.ids import REASON_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import CardRef, shown_digest
from policy.types import Choice, Risk, Status

Block = dict[str, Any]

STATUS_LINE = {
    Status.APPROVED: ":white_check_mark: *Approved*",
    Status.REJECTED: ":x: *Rejected*",
    Status.EXPIRED: ":hourglass: *Expired*",
    Status.CANCELLED: ":no_entry_sign: *Cancelled by the agent*",
    Status.AUTO_APPROVED: ":white_check_mark: *Auto-approved*",
    Status.DENIED: ":no_entry: *Denied by policy*",
}


@dataclass(frozen=True, slots=True)
class VoteLine:
    user: str
    choice: Choice
    at: datetime
    reason: str | None = None
    for_user: str | None = None  # the delegator, when ``user`` voted as their delegate


@dataclass(frozen=True, slots=True)
class QuorumProgress:
    """One line of a cross-pool quorum on a card: its pool, the approvals it needs and those counted for it."""

    pool: str
    approvals: int
    counted: int


@dataclass(frozen=True, slots=True)
class CardEdit:
    """A reviewer edited the params (edit then approve): what a card says of it."""

    by: str | None
    changes: Sequence[tuple[str, Any, Any]]  # (path, before, after); None for a value the agent did not send
    closed: bool = False  # this card's stage belongs to the route the edit replaced: its votes no longer count
    moved_to: str | None = None  # on a closed card: the channel of the route that replaced it
    arrived: bool = False  # this card's stage was opened by the edit


@dataclass(frozen=True, slots=True)
class Card:
    """Everything a card shows; built by the service from stored rows."""

    tenant: str
    request_id: str
    action: str
    summary: str
    params: Mapping[str, Any]  # already masked
    status: Status
    approvals_required: int
    deadline_at: datetime | None
    pool: str | None
    requested_by: str | None = None  # the agent (API key label)
    on_behalf_of: str | None = None
    agent_reason: str | None = None
    links: Sequence[str] = ()
    votes: Sequence[VoteLine] = ()
    decided_by: str | None = None
    decided_for: str | None = None  # the delegator, when ``decided_by`` voted as their delegate
    decided_at: datetime | None = None
    decision_reason: str | None = None
    escalated_to: str | None = None  # channel id of the next stage, once this stage's card is escalated
    stage: int = 0
    mentions: Sequence[str] = ()  # who to call on a card posted by an escalation (user ids, or a usergroup id)
    risk: Risk | None = None
    escalated_deadline_at: datetime | None = None  # the deadline of the stage it escalated to, past this card's
    approvers: Sequence[str] | None = None  # who can still approve (None: not known where the card was drawn)
    quorum: Sequence[QuorumProgress] = ()  # a cross-pool quorum's lines (every card of the request shows them all)
    params_sha256: str | None = None  # of the params shown: the buttons carry it, so a vote is for what was seen
    revealable: Sequence[str] = ()  # masked params an eligible reviewer may reveal to themselves (the Reveal button)
    editable: bool = False  # the action lists `editable` params: the card offers Edit & approve
    edit: CardEdit | None = None

    @property
    def approvals(self) -> int:
        return len({v.for_user or v.user for v in self.votes if v.choice is Choice.APPROVE})


RISK_ICON = {Risk.LOW: ":white_circle:", Risk.MEDIUM: ":large_yellow_circle:", Risk.HIGH: ":large_orange_circle:",
             Risk.CRITICAL: ":red_circle:"}  # fmt: skip


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters (Slack refuses longer), an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_date(at: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """``at`` in each reader's own time zone (Slack formats it), UTC where a client cannot."""
    return f"<!date^{int(at.timestamp())}^{fmt}|{at.strftime('%Y-%m-%d %H:%M UTC')}>"


def mrkdwn(text: str) -> Block:
    """A text object Slack formats (bold, mentions, links)."""
    return {"type": "mrkdwn", "text": text}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(cut(text, 3000))}


def plain(text: str, limit: int = 3000) -> Block:
    """A plain_text object (titles, labels, options, placeholders), cut to the field's ``limit``."""
    return {"type": "plain_text", "text": cut(text, limit), "emoji": True}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, 150)}


def value_text(value: Any) -> str:
    """A param's value as a card shows it: text as is, anything else as JSON, cut to 300 characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return cut(text, 300)


def _flat(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects as dotted fields (``customer.name``), which read better on a card than JSON."""
    items: list[tuple[str, Any]] = []
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            items.extend(_flat(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def param_fields(params: Mapping[str, Any], limit: int = 10) -> list[Block]:
    """Params as section fields; past ``limit`` the last field says how many more (see Details)."""
    items = _flat(params)
    shown = items if len(items) <= limit else items[: limit - 1]
    fields = [mrkdwn(cut(f"*{k}*\n{value_text(v)}", 2000)) for k, v in shown]
    if len(items) > limit:
        fields.append(mrkdwn(f"_…and {len(items) - len(shown)} more: see Details_"))
    return fields


def button(text: str, action_id: ActionId, ref: CardRef, style: str | None = None) -> Block:
    """A card button carrying the request's reference (the same on cards and on App Home)."""
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id.value,
        "value": ref.dumps(),
    }
    if style:
        button["style"] = style
    return button


def card_buttons(ref: CardRef) -> list[Block]:
    """Approve, Reject, Details: the same on a card and on App Home, so one set of listeners serves both."""
    return [
        button("Approve", ActionId.APPROVE, ref, "primary"),
        button("Reject", ActionId.REJECT, ref, "danger"),
        button("Details", ActionId.DETAILS, ref),
    ]


def request_card(card: Card) -> list[Block]:
    """The card posted in a pool's channel, updated in place on every vote and on the decision."""
    ref = CardRef(t=card.tenant, r=card.request_id, p=shown_digest(card.params_sha256) if card.params_sha256 else None)
    title = ("Approval needed: " if card.status is Status.PENDING else "") + card.summary
    asker = f"*{card.requested_by}*" if card.requested_by else "An agent"
    who = f"{asker} asks to run `{card.action}` for *{card.tenant}*"
    if card.on_behalf_of:
        who += f" on behalf of <@{card.on_behalf_of}>"
    blocks: list[Block] = [
        header(title),
        section(who + (f"\n>{card.agent_reason}" if card.agent_reason else "")),
    ]
    if card.mentions and card.stage > 0 and card.status is Status.PENDING:
        people = " ".join(f"<!subteam^{m}>" if m.startswith("S") else f"<@{m}>" for m in card.mentions)
        why = "after an edit" if card.edit is not None and card.edit.arrived else "after no decision in time"
        blocks.append(section(f":arrow_heading_up: Escalated to your pool {why}: {people}"))
    fields = param_fields(card.params)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if card.edit is not None:
        blocks.append({"type": "context", "elements": [mrkdwn(edit_line(card.edit))]})
    blocks.append({"type": "context", "elements": [mrkdwn(t) for t in _context_lines(card)]})
    if card.escalated_to and card.status is Status.PENDING:
        blocks.append(
            {
                "type": "context",
                "elements": [mrkdwn(_escalated_line(card.escalated_to, card.escalated_deadline_at))],
            }
        )
    if card.status is Status.PENDING and card.edit is not None and card.edit.closed:
        where = f" <#{card.edit.moved_to}>" if card.edit.moved_to else " another pool"
        text = f":arrow_right: Edited and moved to{where}; votes here no longer count."
        blocks.append({"type": "context", "elements": [mrkdwn(text)]})
    elif card.status is Status.PENDING:
        # Reveal is the channel card's alone: App Home shares card_buttons, and its queue shows no params.
        reveal = [button("Reveal", ActionId.REVEAL, ref)] if card.revealable else []
        edit = [button("Edit & approve", ActionId.EDIT, ref)] if card.editable else []
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS.value,
                "elements": card_buttons(ref) + edit + reveal,
            }
        )
    else:
        blocks.append({"type": "divider"})
        blocks.append(section(outcome_line(card)))
    return blocks


def edit_value(value: Any) -> str:
    """A param's value in an edit's diff (``–``: the agent did not send it)."""
    return "–" if value is None else value_text(value)


def edit_line(edit: CardEdit) -> str:
    """``:pencil2: Edited by @ben: amount 620 → 450``, the card's and the Details' diff (before → after)."""
    by = f" by <@{edit.by}>" if edit.by else ""
    diff = "; ".join(f"*{path}* {edit_value(before)} → {edit_value(after)}" for path, before, after in edit.changes)
    return cut(f":pencil2: Edited{by} (as asked → as edited): {diff}", 2000)


def _context_lines(card: Card) -> list[str]:
    lines = [f"{RISK_ICON[card.risk]} *{card.risk.value}* risk"] if card.risk else []
    # A card an edit moved away from: its deadline and approvers are the new route's business.
    live = card.status is Status.PENDING and not (card.edit is not None and card.edit.closed)
    if card.quorum:
        lines.append(quorum_line(card.quorum))
    else:
        lines.append(f"Approvals *{card.approvals} of {card.approvals_required}*")
    if card.deadline_at and live:
        # Relative ("in 12 minutes") as each reader's Slack renders it now, then the time itself.
        # This card's own stage's deadline: after an escalation it has passed, and the next one is said below.
        lines.append(f"Deadline {slack_date(card.deadline_at, '{ago}, {date_short_pretty} at {time}')}")
    if card.pool:
        lines.append(f"Pool `{card.pool}`")
    if card.approvers is not None and live:
        lines.append(_approvers(card.approvers))
    lines.append(f"Request `{card.request_id}`")
    return lines


def _escalated_line(channel: str, deadline: datetime | None) -> str:
    due = f", deadline {slack_date(deadline, '{ago}, {date_short_pretty} at {time}')}" if deadline else ""
    return f":arrow_heading_up: Escalated to <#{channel}>{due}; votes here still count."


NAMED_APPROVERS = 5  # past this many, a card says how many can approve rather than who


def _approvers(users: Sequence[str]) -> str:
    if not users:
        return "Nobody present can approve now: it waits for the deadline"
    if len(users) <= NAMED_APPROVERS:
        return "Can approve: " + " ".join(f"<@{u}>" for u in users)
    return f"Can approve: {len(users)} people"


def outcome_line(card: Card) -> str:
    """What happened, by whom, when and why, in one line."""
    line = STATUS_LINE.get(card.status, card.status.value)
    if card.decided_by:
        line += f" by {voter(card.decided_by, card.decided_for)}"
    if card.decided_at:
        line += f" {slack_date(card.decided_at)}"
    if card.decision_reason:
        line += f"\n>{card.decision_reason}"
    return line


def card_text(card: Card) -> str:
    """The notification text (push notifications and screen readers read this, not the blocks)."""
    if card.status is Status.PENDING:
        return cut(f"Approval needed ({card.tenant}): {card.summary}", 3000)
    return cut(f"{card.summary}: {card.status.value}", 3000)


def quorum_line(lines: Sequence[QuorumProgress]) -> str:
    """A cross-pool quorum's progress: ``security_team 1/1 ✓ · finance_team 0/1``."""
    parts = [
        f"`{q.pool}` {min(q.counted, q.approvals)}/{q.approvals}"
        + (" :heavy_check_mark:" if q.counted >= q.approvals else "")
        for q in lines
    ]
    return "Approvals " + " · ".join(parts) + " (one person counts once)"


def vote_note(
    user: str,
    choice: Choice,
    reason: str | None,
    approvals: int,
    required: int,
    quorum: Sequence[QuorumProgress] = (),
    *,
    for_user: str | None = None,
) -> str:
    """The thread message for a vote (with a cross-pool quorum, every line's progress)."""
    who = voter(user, for_user)
    if choice is Choice.APPROVE and quorum:
        return f":white_check_mark: {who} approved. {quorum_line(quorum)}."
    if choice is Choice.APPROVE:
        return f":white_check_mark: {who} approved ({approvals} of {required})."
    return f":x: {who} rejected: {reason or 'no reason given'}"


def voter(user: str, for_user: str | None = None) -> str:
    """A voter as people read them: "@ben", or "@ben (for @ada)" when Ben stood in for Ada."""
    return f"<@{user}> (for <@{for_user}>)" if for_user else f"<@{user}>"


def reject_modal(ref: CardRef, summary: str) -> Block:
    """The modal that asks a reviewer why they reject; the reason is required."""
    return {
        "type": "modal",
        "callback_id": CallbackId.REJECT_REASON.value,
        "private_metadata": ref.dumps(),
        "title": {"type": "plain_text", "text": "Reject request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"You are rejecting:\n*{cut(summary, 2500)}*"),
            {
                "type": "input",
                "block_id": BlockId.REJECT_REASON.value,
                "label": {"type": "plain_text", "text": "Why? The agent and the audit log will see this."},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "min_length": 3,
                    "max_length": 1000,
                },
            },
        ],
    }
