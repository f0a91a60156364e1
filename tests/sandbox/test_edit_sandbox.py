"""The sandbox shows edit then approve: the large refund's card offers Edit & approve (acme-support's `editable:
[amount, note]`); as the page would, Ada lowers the amount and the card ends approved, showing the change."""

from __future__ import annotations

import json

from bot.ids import EDIT_FIELD, EDIT_INPUT, ActionId, CallbackId
from bot.sandbox.runner import Sandbox
from bot.sandbox.testing import SlackDriver
from tests.sandbox.test_sandbox import LARGE_REFUND, TIER1, page_action, sample_index

ADA = "U0ADA"


async def test_edit_and_approve_on_the_sample_refund_from_the_page(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.EDIT)
    clicked = await page_action(
        sandbox, "click", {"user": ADA, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.EDIT}
    )
    assert clicked["ok"], clicked
    modal = await slack.wait_for_modal(ADA, callback_id=CallbackId.EDIT_SUBMIT)
    # The sample's note is there to edit; the masked fields are not in the form.
    inputs = {b["block_id"]: b["element"].get("initial_value") for b in modal.data["blocks"] if b["type"] == "input"}
    assert inputs[f"{EDIT_FIELD}amount"] == "620" and inputs[f"{EDIT_FIELD}note"] == "parcel never arrived"
    assert not any("card_number" in k or "email" in k for k in inputs)
    submitted = await page_action(
        sandbox, "submit", {"user": ADA, "view_id": modal.id, "inputs": {f"{EDIT_FIELD}amount/{EDIT_INPUT}": "550"}}
    )
    assert submitted["ok"], submitted
    decided = await slack.wait_for_message(
        TIER1, predicate=lambda m: m.ts == card.ts and "Approved" in json.dumps(m.blocks)
    )
    assert "*amount* 620 → 550" in json.dumps(decided.blocks, ensure_ascii=False)
