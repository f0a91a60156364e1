"""The sandbox shows delegation: Chloe, away, hands her vote to Erin from the page's command line, and Erin's
Approve on the sample refund counts for Chloe in a pool Erin is not in."""

from __future__ import annotations

from bot.ids import ActionId
from bot.sandbox.runner import Sandbox
from bot.sandbox.testing import SlackDriver, message_text
from tests.sandbox.test_sandbox import LARGE_REFUND, TIER1, page_action, sample_index

CHLOE, ERIN = "U0CHLOE", "U0ERIN"


async def test_a_delegate_typed_in_the_page_approves_for_the_delegator(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    typed = await page_action(sandbox, "command", {"user": CHLOE, "line": "/hitl delegate @erin", "channel": "general"})
    assert typed["ok"], typed
    told = message_text(await slack.wait_for_ephemeral(CHLOE, channel="general"))
    assert f"<@{ERIN}>" in told, told

    await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    clicked = await page_action(
        sandbox, "click", {"user": ERIN, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.APPROVE}
    )
    assert clicked["ok"], clicked
    note = await slack.wait_until(
        lambda: next((m for m in slack.thread(TIER1, card.ts) if f"(for <@{CHLOE}>)" in message_text(m)), None),
        what="Erin's vote, for Chloe, in the card's thread",
    )
    assert f"<@{ERIN}>" in message_text(note)
