"""The approval loop as a user sees it: an agent asks, reviewers click in Slack, one decision comes out."""

from __future__ import annotations

import asyncio

from bot.ids import ActionId, BlockId, CallbackId
from tests.e2e.conftest import ADA, BEN, CHLOE, OUTSIDER, TIER1, TIER2, Stack, refund

REFUND = refund("A-1")


async def test_auto_approve_answers_at_once_and_posts_nothing(stack: Stack) -> None:
    status, body = await stack.agent().ask("process_refund", {**REFUND, "amount": 20})
    assert status == 200
    assert body["status"] == "auto_approved"
    assert body["decision"]["by"] == "policy"
    assert "is false" in body["decision"]["reason"]
    assert stack.slack.messages(TIER1) == []


async def test_review_posts_a_card_then_approve_decides(stack: Stack) -> None:
    status, body = await stack.agent().ask("process_refund", REFUND, context={"reason": "charged twice"})
    assert status == 202
    assert (body["status"], body["pool"], body["approvals_required"]) == ("pending", "support_tier_1", 1)
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    text = repr(card.blocks)
    assert "Refund €620 to Ana (order A-1)" in text
    assert "charged twice" in text
    assert "4111111111111111" not in text and "ana@example.com" not in text  # sensitive params masked
    assert body["id"] in text

    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    decided = await stack.slack.wait_for_message(TIER1, predicate=lambda m: "Approved" in repr(m.blocks))
    assert ActionId.APPROVE not in repr(decided.blocks)  # the buttons are gone
    status, body = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (status, body["status"], body["decision"]["by"]) == (200, "approved", BEN)
    assert [v["user"] for v in body["votes"]] == [BEN]
    thread = stack.slack.thread(TIER1, decided.ts)
    assert any("approved" in m.text for m in thread)


async def test_outsider_is_refused_with_an_explanation(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND)
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    note = await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")
    assert note is not None
    _, body = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (body["status"], body["votes"]) == ("pending", [])


async def test_self_approval_is_refused(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND, context={"on_behalf_of": BEN})
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(BEN, text="acts on your behalf")
    _, body = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert body["status"] == "pending"


async def test_two_reviewers_and_the_same_person_twice(stack: Stack) -> None:
    _, body = await stack.agent().ask("close_account", {"customer_id": 4411})
    assert body["approvals_required"] == 2 and body["pool"] == "support_tier_2"
    await stack.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)
    await stack.slack.click("U0DEV", channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_message(TIER2, predicate=lambda m: "Approvals *1 of 2*" in repr(m.blocks))
    await stack.slack.click("U0DEV", channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral("U0DEV", text="already voted")
    _, mid = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (mid["status"], len(mid["votes"])) == ("pending", 1)
    await stack.slack.click("U0ERIN", channel=TIER2, action_id=ActionId.APPROVE)
    _, done = await stack.agent().call("GET", f"/v1/requests/{body['id']}", wait=5)
    assert done["status"] == "approved"
    assert sorted(v["user"] for v in done["votes"]) == ["U0DEV", "U0ERIN"]


async def test_reject_needs_a_reason_given_in_the_modal(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND)
    await stack.slack.click(CHLOE, channel=TIER1, action_id=ActionId.REJECT)
    modal = await stack.slack.wait_for_modal(CHLOE, callback_id=CallbackId.REJECT_REASON)
    assert "Refund €620" in repr(modal.data["blocks"])
    delivery = await stack.slack.submit_modal(CHLOE, {f"{BlockId.REJECT_REASON}/reason": "no"})
    assert delivery.ack_json()["response_action"] == "errors"  # too short: the modal stays open with the error
    await stack.slack.submit_modal(CHLOE, {f"{BlockId.REJECT_REASON}/reason": "order was never shipped"})
    _, done = await stack.agent().call("GET", f"/v1/requests/{body['id']}", wait=5)
    assert (done["status"], done["decision"]["by"]) == ("rejected", CHLOE)
    assert done["decision"]["reason"] == "order was never shipped"
    card = await stack.slack.wait_for_message(TIER1, predicate=lambda m: "Rejected" in repr(m.blocks))
    assert "order was never shipped" in repr(card.blocks)


async def test_sync_wait_returns_the_moment_a_reviewer_clicks(stack: Stack) -> None:
    agent = stack.agent()
    waiting = asyncio.create_task(agent.ask("process_refund", REFUND, wait=30))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    loop = asyncio.get_running_loop()
    clicked = loop.time()
    await stack.slack.click(ADA, channel=TIER1, action_id=ActionId.APPROVE)
    status, body = await asyncio.wait_for(waiting, timeout=10)
    assert (status, body["status"]) == (200, "approved")
    assert loop.time() - clicked < 2  # woken by the decision, not by the 30 s wait running out
