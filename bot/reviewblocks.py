"""What a reviewer sees besides the card itself: the Details modal with the request's audit trail, why a
click was not counted, the values a Reveal shows, and the notices for an outdated button or a failure.

Pure functions of their inputs, within the limits :mod:`bot.blocks` keeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks import Block, Card, cut, edit_line, mrkdwn, outcome_line, section, slack_date, value_text
from policy.reveal import RevealRefusal
from policy.types import Refusal, Status

REFUSALS = {
    Refusal.NOT_IN_POOL: "You are not in a reviewer pool for this request, so your click was not counted.",
    Refusal.OWN_REQUEST: "This request acts on your behalf, so you cannot vote on it; someone else must.",
    Refusal.DUPLICATE: (
        "You have already voted on this request (or your delegate, or the person you stand in for, did); "
        "each person counts once."
    ),
    Refusal.REASON_REQUIRED: "A rejection needs a reason: use Reject on the card and say why.",
    Refusal.STALE: "Not counted: a reviewer edited this request's params after your view of it was drawn."
    " Look at the updated card (it shows what changed) and vote there.",
    Refusal.ALREADY_DECIDED: "This request has already been decided; your click was not counted.",
}


@dataclass(frozen=True, slots=True)
class TrailLine:
    at: datetime
    kind: str
    actor: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Details:
    card: Card
    context: Mapping[str, Any] = field(default_factory=dict)
    trail: Sequence[TrailLine] = ()


def details_modal(details: Details) -> Block:
    """Full params, the agent's context and the request's audit trail."""
    card = details.card
    blocks: list[Block] = [
        section(f"*{cut(card.summary, 2800)}*\n`{card.action}` · *{card.tenant}* · `{card.request_id}`")
    ]
    params = json.dumps(dict(card.params), indent=2, ensure_ascii=False, default=str)
    blocks.append(section("*Params*\n```" + cut(params, 2900) + "```"))
    if card.edit is not None:
        blocks.append(section(edit_line(card.edit)))
    if details.context:
        context = json.dumps(dict(details.context), indent=2, ensure_ascii=False, default=str)
        blocks.append(section("*Context*\n```" + cut(context, 2900) + "```"))
    blocks.append({"type": "divider"})
    blocks.append(section("*Trail*"))
    for line in list(details.trail)[-40:]:
        actor = f" <@{line.actor}>" if line.actor and line.actor.startswith(("U", "W")) else ""
        text = f"{slack_date(line.at, '{time_secs}')} *{line.kind}*{actor} {line.text}"
        blocks.append({"type": "context", "elements": [mrkdwn(cut(text, 3000))]})
    if card.status is not Status.PENDING:
        blocks.append(section(outcome_line(card)))
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Request details"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks[:100],
    }


def refusal_text(refusal: Refusal) -> str:
    return REFUSALS[refusal]


REVEAL_REFUSALS = {
    RevealRefusal.NOT_IN_POOL: "You are not in a reviewer pool for this request, so its masked fields stay hidden.",
    RevealRefusal.OWN_REQUEST: "This request acts on your behalf, so its masked fields stay hidden from you.",
    RevealRefusal.ALREADY_DECIDED: "This request has been decided, so its masked fields stay hidden: there is"
    " nothing left to decide with them.",
    RevealRefusal.NOT_REVEALABLE: "None of this request's masked fields may be revealed: the manifest forbids it.",
}


def reveal_refusal_text(refusal: RevealRefusal) -> str:
    return REVEAL_REFUSALS[refusal]


def _escaped(text: str) -> str:
    # A revealed value is the agent's text: it must not mention, link or format anything in Slack.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def reveal_text(fields: Sequence[tuple[str, Sequence[Any]]], withheld: Sequence[str] = ()) -> str:
    """The message only the revealing reviewer sees: each field's value (several for a path through a list)."""
    lines = [":eyes: Only you can see this. Your reveal is in the audit log (the values are not)."]
    for path, values in fields:
        shown = value_text(values[0]) if len(values) == 1 else value_text(list(values))
        lines.append(f"*{path}*: {_escaped(shown)}")
    if withheld:
        lines.append("_Never revealed (the manifest forbids it): " + ", ".join(f"`{p}`" for p in withheld) + "_")
    return cut("\n".join(lines), 3000)


UNKNOWN_BUTTON = "This button belongs to an older version of this card and does nothing now; use the current card."
SOMETHING_WENT_WRONG = "Something went wrong on our side and nothing was recorded. Please try again (ref `{ref}`)."
