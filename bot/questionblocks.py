"""Block Kit of questions (``POST /v1/questions``): the card, the reply modal and what a person is told.
Pure functions of their inputs, within the limits bot.blocks keeps.

A pending card offers one button per choice and **Reply…** (a modal for a written answer); once
answered, the buttons go and the answer stays, with who gave it and when; once expired or withdrawn by
the agent (``POST /v1/questions/{id}/cancel``), the buttons go and the card says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.blocks import Block, cut, section, slack_date
from bot.ids import ANSWER_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import CardRef
from policy.types import Status

MAX_ANSWER = 2000


@dataclass(frozen=True, slots=True)
class QuestionCard:
    """What a question's card shows, rendered from its row (bot.service.questions)."""

    tenant: str
    request_id: str
    question: str
    choices: tuple[str, ...]
    status: Status
    pool: str | None
    deadline_at: datetime | None
    asked_by: str | None = None  # the agent's name
    on_behalf_of: str | None = None
    summary: str | None = None
    reason: str | None = None
    links: tuple[str, ...] = ()
    answer: str | None = None
    answer_choice: int | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def ref(self) -> CardRef:
        return CardRef(t=self.tenant, r=self.request_id)


def choice_action_id(index: int) -> str:
    return f"{ActionId.ANSWER.value}:{index}"


def choice_of(action_id: str) -> int | None:
    """The choice a button's action_id names; None for anything else."""
    prefix, _, index = action_id.partition(":")
    return int(index) if prefix == ActionId.ANSWER.value and index.isdigit() and len(index) <= 2 else None


def _button(text: str, action_id: str, ref: CardRef, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": cut(text, 75), "emoji": True},
        "action_id": action_id,
        "value": ref.dumps(),
    }
    if style:
        button["style"] = style
    return button


def _quote(text: str) -> str:
    return "\n".join(f">{line}" for line in text.splitlines() or [""])


def outcome_line(card: QuestionCard) -> str:
    if card.status is Status.ANSWERED:
        line = ":speech_balloon: *Answered*"
        if card.answered_by:
            line += f" by <@{card.answered_by}>"
        if card.answered_at:
            line += f" {slack_date(card.answered_at)}"
        return line + f"\n{_quote(cut(card.answer or '', 2500))}"
    if card.status is Status.CANCELLED:
        return ":no_entry_sign: *Withdrawn by the agent* before anyone answered"
    return ":hourglass: *Expired* with no answer"


def question_card(card: QuestionCard) -> list[Block]:
    """The card posted in the pool's channel, updated in place once answered (or expired)."""
    who = f"`{card.asked_by}`" if card.asked_by else "An agent"
    if card.on_behalf_of:
        who += f" on behalf of <@{card.on_behalf_of}>"
    blocks: list[Block] = [
        section(f":question: *Question* from {who}"),
        section(_quote(cut(card.question, 2800))),
    ]
    extra = [f"*Why:* {cut(card.reason, 1500)}"] if card.reason else []
    extra += [f"*Summary:* {cut(card.summary, 500)}"] if card.summary else []
    extra += [f"<{link}>" for link in card.links[:5]]
    if extra:
        blocks.append(section("\n".join(extra)))
    facts = [f"Tenant `{card.tenant}`"]
    if card.pool:
        facts.append(f"pool `{card.pool}`")
    if card.status is Status.PENDING and card.deadline_at:
        facts.append(f"answer by {slack_date(card.deadline_at)}")
    facts.append(f"id `{card.request_id}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]})
    if card.status is Status.PENDING:
        ref = card.ref
        buttons = [_button(c, choice_action_id(i), ref) for i, c in enumerate(card.choices)]
        buttons.append(_button("Reply…", ActionId.REPLY.value, ref, None if card.choices else "primary"))
        blocks.append({"type": "actions", "block_id": BlockId.QUESTION_ACTIONS.value, "elements": buttons})
    else:
        blocks.append(section(outcome_line(card)))
    return blocks


def card_text(card: QuestionCard) -> str:
    """The notification text (push notifications and screen readers read this, not the blocks)."""
    if card.status is Status.PENDING:
        return cut(f"Question ({card.tenant}): {card.question}", 3000)
    if card.status is Status.ANSWERED:
        return cut(f"Answered: {card.question}", 3000)
    if card.status is Status.CANCELLED:
        return cut(f"Withdrawn by the agent: {card.question}", 3000)
    return cut(f"Closed with no answer: {card.question}", 3000)


def reply_modal(ref: CardRef, question: str, choices: Sequence[str]) -> Block:
    """The modal for a written answer."""
    offered = f"\n_Offered: {cut(', '.join(choices), 500)}_" if choices else ""
    return {
        "type": "modal",
        "callback_id": CallbackId.ANSWER_REPLY.value,
        "private_metadata": ref.dumps(),
        "title": {"type": "plain_text", "text": "Answer the question"},
        "submit": {"type": "plain_text", "text": "Send answer"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"{_quote(cut(question, 2500))}{offered}"),
            {
                "type": "input",
                "block_id": BlockId.ANSWER_TEXT.value,
                "label": {"type": "plain_text", "text": "Your answer. The agent and the audit log will see it."},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ANSWER_INPUT,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_ANSWER,
                },
            },
        ],
    }


REFUSAL_TEXT = {
    "already_answered": "This question has already been answered; yours was not recorded.",
    "closed": "This question is closed (it expired or the agent withdrew it); your answer was not recorded.",
    "not_in_pool": "Only members of the pool this question was asked of can answer it.",
    "own_question": "This question is asked on your behalf, so someone else must answer it.",
    "bad_choice": "This button is not one of the question's choices; use the current card.",
}


def refusal_text(refusal: str) -> str:
    return REFUSAL_TEXT.get(refusal, "Your answer was not recorded.")


WITHDRAWN_NOTE = ":no_entry_sign: The agent withdrew this question before anyone answered it."


def answered_note(user: str, text: str) -> str:
    """The note in the card's thread when someone answers."""
    return f":speech_balloon: <@{user}> answered:\n{_quote(cut(text, 2800))}"
