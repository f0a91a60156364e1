"""The sandbox page's sample question: sent to POST /v1/questions, answered on its card, followed to its answer."""

from __future__ import annotations

from bot.ids import ANSWER_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.testing import SlackDriver, action_ids
from tests.e2e.conftest import BEN, TIER1
from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox import page_action, sample_index

QUESTION = "a question for support_tier_1"


async def test_the_sample_question_is_answered_by_a_choice_on_its_card(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    sent = await page_action(sandbox, "sample", {"index": sample_index(sandbox, QUESTION)})
    assert (sent["ok"], sent["status"], sent["answer"]["status"], sent["answer"]["kind"]) == (
        True, 202, "pending", "question"
    )  # fmt: skip
    card = await slack.wait_for_message(TIER1, action_id=f"{ActionId.ANSWER}:1")
    assert "store credit" in repr(card.blocks) and ActionId.REPLY in action_ids(card)

    clicked = await page_action(
        sandbox, "click", {"user": BEN, "channel": TIER1, "message_ts": card.ts, "action_id": f"{ActionId.ANSWER}:1"}
    )
    assert clicked["ok"], clicked
    await slack.wait_for_message(TIER1, predicate=lambda m: m.ts == card.ts and "*Answered*" in repr(m.blocks))
    now = await page_action(sandbox, "request", {"tenant": "acme-support", "id": sent["answer"]["id"]})
    answer = now["answer"]["answer"]
    assert (now["answer"]["status"], answer["text"], answer["by"]) == ("answered", "Card refund", BEN)


async def test_the_sample_question_can_be_answered_in_words(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    sent = await page_action(sandbox, "sample", {"index": sample_index(sandbox, QUESTION)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.REPLY)
    await page_action(sandbox, "click", {"user": BEN, "channel": TIER1, "message_ts": card.ts,
                                         "action_id": ActionId.REPLY})  # fmt: skip
    modal = await slack.wait_for_modal(BEN, callback_id=CallbackId.ANSWER_REPLY)
    inputs = {f"{BlockId.ANSWER_TEXT}/{ANSWER_INPUT}": "Offer both; she picks"}
    submitted = await page_action(sandbox, "submit", {"user": BEN, "view_id": modal.id, "inputs": inputs})
    assert submitted["ok"], submitted
    await slack.wait_for_message(TIER1, predicate=lambda m: m.ts == card.ts and "she picks" in repr(m.blocks))
    now = await page_action(sandbox, "request", {"tenant": "acme-support", "id": sent["answer"]["id"]})
    assert (now["answer"]["answer"]["text"], now["answer"]["answer"]["choice"]) == ("Offer both; she picks", None)
