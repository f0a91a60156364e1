"""Block Kit for bulk approval from the App Home. Pure functions of typed values.

Three modal steps: pick the requests (a multi_static_select: checkboxes take at most 10 options,
a burst has more), check them side by side (what every request shares said once, then per request
only what differs; sensitive fields masked as on the cards), and the result, request by request.
Slack's limits kept: modal title and submit 24 characters, option text 75, section text 3,000,
10 fields a section, 100 blocks a modal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.blocks import RISK_ICON, Block, cut, header, plain, section
from bot.home.answers import BulkOffer
from bot.ids import BULK_PICK_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import BulkRef, shown_digest
from bot.queue import context
from bot.service.bulk import BULK_MAX, BulkItem, BulkOutcome
from policy.types import Refusal, Status

BULK_OFFERS_BLOCK = "countersign.home.bulk"
MAX_OFFERS = 5  # buttons in the Home's bulk row; the queue shows the rest anyway
SECTION_TEXT = 3000
FIELDS = 10

# Why one request of a bulk approval was not counted, in a few words (the card's refusals address a click).
SKIPPED = {
    Refusal.NOT_IN_POOL: "you are not in a reviewer pool that may approve it now",
    Refusal.OWN_REQUEST: "it acts on your behalf, so someone else must approve it",
    Refusal.DUPLICATE: "you have already voted on it",
    Refusal.ALREADY_DECIDED: "it was decided meanwhile",
    Refusal.REASON_REQUIRED: "a rejection needs a reason",
    Refusal.STALE: "its params were edited after you checked them: look again",
}


def offers_block(offers: Sequence[BulkOffer]) -> Block | None:
    """The Home's row of "Approve several" buttons, one per action with two or more requests to approve."""
    if not offers:
        return None
    return {
        "type": "actions",
        "block_id": BULK_OFFERS_BLOCK,
        "elements": [
            {
                "type": "button",
                "text": plain(f"Approve several: {o.action} ({o.count})", 75),
                "action_id": ActionId.BULK_OPEN.value,
                "value": BulkRef(t=o.tenant, a=o.action).dumps(),
            }
            for o in offers[:MAX_OFFERS]
        ],
    }


def _option(item: BulkItem) -> Block:
    # The id's head tells apart requests whose summaries are alike (a burst's usually are).
    label = f"{item.request_id[:6]} · {item.summary}"
    return {"text": plain(label, 75), "value": item.request_id}


def select_modal(ref: BulkRef, items: Sequence[BulkItem], more: int) -> Block:
    """Step 1: which of the pending requests of one action to approve (all of them chosen to begin with)."""
    options = [_option(i) for i in items[:BULK_MAX]]
    blocks: list[Block] = [
        section(
            f"Pending `{ref.action}` requests of *{ref.tenant}* that you may approve now. "
            "Keep the ones to approve; the next step shows them side by side before anything is approved."
        ),
        {
            "type": "input",
            "block_id": BlockId.BULK_PICK.value,
            "label": plain("Requests to approve", 2000),
            "element": {
                "type": "multi_static_select",
                "action_id": BULK_PICK_INPUT,
                "placeholder": plain("Choose requests", 150),
                "options": options,
                "initial_options": options,
                "max_selected_items": BULK_MAX,
            },
        },
    ]
    if more:
        blocks.append(context(f"_…and {more} more: at most {BULK_MAX} at a time, riskiest and oldest first._"))
    return {
        "type": "modal",
        "callback_id": CallbackId.BULK_SELECT.value,
        "title": plain("Approve several", 24),
        "submit": plain("Review", 24),
        "close": plain("Cancel", 24),
        "private_metadata": ref.dumps(),
        "blocks": blocks,
    }


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return cut(text, 300)


def _fields(pairs: Sequence[tuple[str, Any]]) -> list[Block]:
    shown = pairs if len(pairs) <= FIELDS else pairs[: FIELDS - 1]
    fields = [{"type": "mrkdwn", "text": cut(f"*{k}*\n{_shown(v)}", 2000)} for k, v in shown]
    if len(pairs) > FIELDS:
        fields.append({"type": "mrkdwn", "text": f"_…and {len(pairs) - len(shown)} more: see Details on its card_"})
    return fields


def preflight_modal(ref: BulkRef, items: Sequence[BulkItem]) -> Block:
    """Step 2: the chosen requests side by side, and "Approve all N". ``ref`` carries the selection."""
    flat = [_flat(i.params) for i in items]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    same = [k for k in keys if all(k in f for f in flat) and len({_shown(f[k]) for f in flat}) == 1]
    differ = [k for k in keys if k not in same]
    blocks: list[Block] = [
        context(
            f"*{len(items)}* `{ref.action}` request{'s' if len(items) != 1 else ''} of *{ref.tenant}*. "
            "Each gets its own vote, audit event and card update; any that cannot be approved when you "
            "confirm is listed as refused, and the others are still approved."
        )
    ]
    if same and len(items) > 1:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*The same in all*"}})
        blocks[-1]["fields"] = _fields([(k, flat[0][k]) for k in same])
    for item, params in zip(items, flat, strict=True):
        text = (
            f"{RISK_ICON[item.risk]} *{cut(item.summary, 500)}*\n`{item.request_id}` · "
            f"approvals {item.approvals} of {item.approvals_required}"
        )
        if item.refusal is not None:
            text += f"\n:warning: _will be refused: {SKIPPED.get(item.refusal, item.refusal.value)}_"
        block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT)}}
        shown = [(k, params[k]) for k in (differ if len(items) > 1 else keys) if k in params]
        if shown:
            block["fields"] = _fields(shown)
        blocks.append(block)
    return {
        "type": "modal",
        "callback_id": CallbackId.BULK_CONFIRM.value,
        "title": plain("Check and approve", 24),
        "submit": plain(f"Approve all {len(items)}", 24),
        "close": plain("Back out", 24),
        "private_metadata": ref.model_copy(
            update={
                "request_ids": tuple(i.request_id for i in items),
                "params": tuple(shown_digest(i.params_sha256) for i in items),
            }
        ).dumps(),
        "blocks": blocks[:100],
    }


def progress_modal(count: int) -> Block:
    """Shown while a large bulk approval is still being counted (the result replaces it)."""
    return _done_modal([section(f":hourglass_flowing_sand: Approving {count} requests…")])


def message_modal(text: str) -> Block:
    """A bulk approval that could not go ahead, and why."""
    return _done_modal([section(text)])


def _line(outcome: BulkOutcome) -> str:
    item = outcome.item
    name = f"{cut(item.summary, 200)} `{outcome.request_id}`" if item else f"`{outcome.request_id}`"
    if item is None:
        return f":question: {name}: no such request any more"
    if outcome.failed:
        return f":warning: {name}: something went wrong on our side and nothing was recorded; try it on its card"
    if outcome.refusal is not None:
        return f":no_entry_sign: {name}: {SKIPPED.get(outcome.refusal, outcome.refusal.value)}"
    if item.status is Status.APPROVED:
        return f":white_check_mark: {name}: approved"
    if item.status is Status.PENDING:
        return f":ballot_box_with_check: {name}: your approval counted, {item.approvals} of {item.approvals_required}"
    return f":ballot_box_with_check: {name}: your approval counted; now {item.status.value}"


def _sections(title: str, lines: Sequence[str]) -> list[Block]:
    """``lines`` under ``title``, in as many sections as 3,000 characters each need."""
    out: list[Block] = []
    text = f"*{title}*"
    for line in lines:
        line = cut(line, SECTION_TEXT - 100)
        if len(text) + 1 + len(line) > SECTION_TEXT:
            out.append(section(text))
            text = line
        else:
            text += "\n" + line
    out.append(section(text))
    return out


def result_modal(outcomes: Sequence[BulkOutcome]) -> Block:
    """Step 3: what was approved, what only counted toward more approvals, and what was refused and why."""
    counted = [o for o in outcomes if o.counted]
    refused = [o for o in outcomes if not o.counted]
    approved = sum(1 for o in counted if o.item is not None and o.item.status is Status.APPROVED)
    blocks: list[Block] = [
        header(f"{len(counted)} of {len(outcomes)} approvals counted"),
        context(
            f"{approved} request{'s' if approved != 1 else ''} approved now; "
            f"{len(refused)} refused. Every card shows its own outcome."
        ),
    ]
    if counted:
        blocks += _sections(f"Counted ({len(counted)})", [_line(o) for o in counted])
    if refused:
        blocks += _sections(f"Refused ({len(refused)})", [_line(o) for o in refused])
    return _done_modal(blocks[:100])


def _done_modal(blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "callback_id": CallbackId.BULK_CONFIRM.value,
        "title": plain("Bulk approval", 24),
        "close": plain("Done", 24),
        "blocks": blocks,
    }
