"""Block Kit for the App Home. Pure functions of the typed Home.

A Home view holds 100 blocks. Queue buttons carry the same action ids and ``CardRef`` values as
a card's, so the card listeners handle a click from Home as one from a channel; each item's
actions block gets its own ``block_id`` (block ids must be unique within a view).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.blocks import Block, button, card_buttons, header, section
from bot.home.answers import HomeAnswer
from bot.home.bulk_blocks import offers_block
from bot.ids import ActionId
from bot.payloads import CardRef, shown_digest
from bot.queue import context, date, item_context, item_text

HOME_BLOCKS = 100


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
        blocks.append(context("Highest risk first, then oldest. Requests you may vote on now, across your pools."))
        if (offers := offers_block(answer.bulk)) is not None:
            blocks.append(offers)
    for item in answer.items:
        digest = shown_digest(item.params_sha256) if item.params_sha256 else None
        ref = CardRef(t=item.tenant, r=item.request_id, p=digest)
        edit = [button("Edit & approve", ActionId.EDIT, ref)] if item.editable else []
        blocks += [
            section(item_text(item)),
            item_context(item, answer.now),
            {
                "type": "actions",
                "block_id": home_block_id(item.request_id),
                "elements": card_buttons(ref) + edit,
            },
        ]
    if answer.more:
        blocks.append(context(f"_…and {answer.more} more: `/hitl pending`_"))
    blocks += [{"type": "divider"}, header("Your pools")]
    lines = _membership_lines(answer)
    blocks.append(section("\n".join(lines) if lines else "_None._"))
    if answer.tenants:
        blocks.append(audit_buttons(answer.tenants))
    if answer.policy_of:
        blocks += policy_blocks(answer.policy_of)
    blocks.append(
        context(
            f"Updated {date(answer.now)} · "
            "`/hitl pool away <pool>` when you are out, `/hitl pool back <pool>` on return"
        )
    )
    return {"type": "home", "blocks": blocks[:HOME_BLOCKS]}


def audit_buttons(tenants: Sequence[str]) -> Block:
    """One "Audit trail" button per tenant (at most Slack's 25 elements); each opens the trail in a modal."""
    return {
        "type": "actions",
        "block_id": "countersign.home.audit",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": f"Audit trail: {t}"[:75]},
             "action_id": f"{ActionId.AUDIT_OPEN.value}:{i}", "value": t}
            for i, t in enumerate(tenants[:25])
        ],
    }  # fmt: skip


def policy_blocks(tenants: Sequence[str]) -> list[Block]:
    """For an admin or policy editor: one "Policy" button per tenant, opening the form to propose a change."""
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": f"Policy: {t}"[:75]},
         "action_id": f"{ActionId.POLICY_OPEN.value}:{i}", "value": t}
        for i, t in enumerate(tenants[:25])
    ]  # fmt: skip
    words = (
        "Change a threshold, condition, pool, approvals, timeout or mode, add an action or roll back;"
        " another admin or policy editor approves it."
    )
    return [
        {"type": "divider"},
        header("Policy"),
        context(words),
        {"type": "actions", "block_id": "countersign.home.policy", "elements": buttons},
    ]


def _membership_lines(answer: HomeAnswer) -> Sequence[str]:
    lines = []
    for m in answer.memberships:
        state = ":palm_tree: away" if m.away else ":large_green_circle: available"
        lines.append(f"`{m.pool}` · *{m.tenant}* · {state}")
    for tenant in answer.admin_of:
        lines.append(f":key: admin of *{tenant}*")
    return lines
