"""Bulk approval in the sandbox page: the same sample sent three times, approved together from Home."""

from __future__ import annotations

from bot.home.bulk_blocks import BULK_OFFERS_BLOCK
from bot.ids import BULK_PICK_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.runner import Sandbox
from bot.sandbox.testing import SlackDriver
from tests.sandbox.test_sandbox import LARGE_REFUND, TIER1, call, page_action, sample_index


async def test_three_refunds_sent_from_the_page_are_approved_together_from_home(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    _, state = await call("GET", f"{sandbox.emulator.url}/_emu/state")
    me = state["default_user"]
    index = sample_index(sandbox, LARGE_REFUND)
    sent = [await page_action(sandbox, "sample", {"index": index}) for _ in range(3)]
    ids = [s["answer"]["id"] for s in sent]
    assert len(set(ids)) == 3  # each press is a new request
    await slack.wait_until(lambda: len(slack.messages(TIER1)) == 3 or None, what="three cards")

    assert (await page_action(sandbox, "home", {"user": me}))["ok"]
    home = await slack.wait_for_home(me, text="Approve several: process_refund (3)")
    assert any(b.get("block_id") == BULK_OFFERS_BLOCK for b in home.data["blocks"])
    clicked = await page_action(
        sandbox,
        "click",
        {"user": me, "view_id": home.id, "action_id": ActionId.BULK_OPEN, "block_id": BULK_OFFERS_BLOCK},
    )
    assert clicked["ok"], clicked
    modal = await slack.wait_for_modal(me, callback_id=CallbackId.BULK_SELECT)

    # What the page sends for a multiple select: the chosen values, as a list.
    pick = {f"{BlockId.BULK_PICK}/{BULK_PICK_INPUT}": ids}
    assert (await page_action(sandbox, "submit", {"user": me, "view_id": modal.id, "inputs": pick}))["ok"]
    check = await slack.wait_for_modal(me, callback_id=CallbackId.BULK_CONFIRM)
    assert check.data["submit"]["text"] == "Approve all 3"
    assert (await page_action(sandbox, "submit", {"user": me, "view_id": check.id, "inputs": {}}))["ok"]
    for request_id in ids:
        now = await page_action(sandbox, "request", {"tenant": "acme-support", "id": request_id})
        assert (now["answer"]["status"], now["answer"]["decision"]["by"]) == ("approved", me)
