"""The sandbox shows reveal on demand: the large refund's card offers Reveal, which shows the email, never the card."""

from __future__ import annotations

from bot.ids import ActionId
from bot.sandbox.runner import Sandbox
from bot.sandbox.testing import SlackDriver, message_text
from tests.sandbox.test_sandbox import LARGE_REFUND, TIER1, page_action, sample_index

ADA = "U0ADA"


async def test_reveal_on_the_sample_refund_shows_the_email_to_ada_alone(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.REVEAL)
    assert "ana@example.com" not in message_text(card)

    clicked = await page_action(
        sandbox, "click", {"user": ADA, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.REVEAL}
    )
    assert clicked["ok"], clicked
    told = message_text(await slack.wait_for_ephemeral(ADA, channel=TIER1, text="ana@example.com"))
    assert "customer.email" in told and "`card_number`" in told
    assert not [m for m in slack.messages(TIER1) if "ana@example.com" in message_text(m)]
