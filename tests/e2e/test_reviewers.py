"""Reviewers in Slack: racing clicks, stale and foreign buttons, Details, threads, samples, failing closed."""

from __future__ import annotations

import asyncio
from collections import Counter

from bot import reviewblocks
from bot.errors import NotFound
from bot.ids import ActionId, BlockId
from bot.payloads import CardRef
from bot.sandbox.testing import action_ids
from policy import Choice, Refusal
from tests.e2e.conftest import (
    ADA,
    BEN,
    CHLOE,
    CROWD,
    CROWD_MEMBERS,
    DEV,
    ERIN,
    LAB_ADMIN,
    OUTSIDER,
    SOLO,
    TIER1,
    TIER2,
    Stack,
    eventually,
    refund,
)

REFUND = refund("A-9")


async def test_twenty_racing_approvals_make_exactly_one_decision(stack: Stack) -> None:
    _, body = await stack.agent("lab").ask("crowd_vote", {"what": "flip the switch"})
    assert (body["status"], body["approvals_required"]) == ("pending", 2)
    card = await stack.slack.wait_for_message(CROWD, action_id=ActionId.APPROVE)

    # Every click is sent against the card as it was before any of them landed.
    deliveries = await asyncio.gather(
        *(
            stack.emulator.click(user, channel=CROWD, message_ts=card.ts, action_id=ActionId.APPROVE)
            for user in CROWD_MEMBERS
        )
    )
    assert all(d.ok for d in deliveries), [d.error for d in deliveries if not d.ok]

    _, done = await stack.agent("lab").call("GET", f"/v1/requests/{body['id']}", wait=10)
    assert done["status"] == "approved"
    voters = [v["user"] for v in done["votes"]]
    assert len(voters) == 2 and len(set(voters)) == 2
    assert done["decision"]["by"] == voters[-1]

    async def every_click_audited() -> list[tuple[str, str | None, str | None]] | None:
        records = await stack.audit("lab", body["id"])
        trail = [(r.kind, r.actor, r.payload.get("refusal")) for r in records]
        return trail if sum(kind in ("vote.cast", "click.refused") for kind, _, _ in trail) >= 20 else None

    # Clicks are acked at once and counted after; wait until every one of them is in the audit log.
    trail = await eventually(every_click_audited, what="all 20 clicks audited", timeout=10)
    assert Counter(kind for kind, _, _ in trail if kind != "request.created") == {
        "vote.cast": 2,
        "request.decided": 1,
        "click.refused": 18,
    }
    assert {actor for kind, actor, _ in trail if kind in ("vote.cast", "click.refused")} == set(CROWD_MEMBERS)
    assert {refusal for kind, _, refusal in trail if kind == "click.refused"} == {"already_decided"}

    # Everyone refused is told so, privately.
    refused = [actor for kind, actor, _ in trail if kind == "click.refused"]
    for user in refused:
        await stack.slack.wait_for_ephemeral(user, text="already been decided")

    # The card ends showing the decision: both approvals, no buttons.
    final = await stack.slack.wait_for_message(
        CROWD, predicate=lambda m: m.ts == card.ts and "*Approved*" in repr(m.blocks)
    )
    shown = repr(final.blocks)
    assert "Approvals *2 of 2*" in shown and f"<@{done['decision']['by']}>" in shown
    assert not action_ids(final) & {ActionId.APPROVE, ActionId.REJECT}


async def test_a_click_on_a_stale_card_of_a_decided_request_is_refused_kindly(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND)
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    stale_blocks = card.blocks
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_message(TIER1, predicate=lambda m: m.ts == card.ts and "*Approved*" in repr(m.blocks))

    # A reviewer whose Slack still shows the card as it was (a copy the bot posted earlier, say).
    stale = await stack.runtime.bolt.client.chat_postMessage(channel=TIER1, text="old copy", blocks=stale_blocks)
    for user, choice in ((CHLOE, ActionId.APPROVE), (ADA, ActionId.REJECT)):
        delivery = await stack.emulator.click(user, channel=TIER1, message_ts=stale["ts"], action_id=choice)
        assert delivery.ok and delivery.status == 200
        await stack.slack.wait_for_ephemeral(user, text="already been decided")
    assert stack.slack.modal(ADA) is None  # no reason asked for a vote that cannot count
    _, after = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (after["status"], [v["user"] for v in after["votes"]]) == ("approved", [BEN])
    refusals = [(r.actor, r.payload["refusal"]) for r in await stack.audit("acme-support", body["id"])
                if r.kind == "click.refused"]  # fmt: skip
    assert refusals == [(CHLOE, "already_decided"), (ADA, "already_decided")]


async def test_unknown_buttons_get_a_friendly_note_not_an_error(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND)
    ref = CardRef(t="acme-support", r=body["id"]).dumps()
    foreign = CardRef(t="acme-support", r="req_from_another_life").dumps()
    old = [
        {
            "type": "actions",
            "block_id": BlockId.CARD_ACTIONS.value,
            "elements": [
                # A button a former version of the card had.
                {"type": "button", "text": {"type": "plain_text", "text": "Snooze"}, "action_id": "snooze", "value": ref},
                # Approve buttons whose value is not (or no longer) a request of ours.
                {"type": "button", "text": {"type": "plain_text", "text": "A"}, "action_id": ActionId.APPROVE.value,
                 "value": "refund:A-9"},
                {"type": "button", "text": {"type": "plain_text", "text": "B"}, "action_id": ActionId.DETAILS.value,
                 "value": foreign},
            ],
        }
    ]  # fmt: skip
    posted = await stack.runtime.bolt.client.chat_postMessage(channel=TIER1, text="an old card", blocks=old)
    expected = {
        "snooze": reviewblocks.UNKNOWN_BUTTON,
        ActionId.APPROVE.value: "does not belong to a Countersign request",
        ActionId.DETAILS.value: "no longer exists",
    }
    for action_id, text in expected.items():
        delivery = await stack.emulator.click(BEN, channel=TIER1, message_ts=posted["ts"], action_id=action_id)
        assert delivery.ok and delivery.status == 200, delivery.error
        note = await stack.slack.wait_for_ephemeral(BEN, text=text)
        assert "went wrong" not in note.text
    _, still = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (still["status"], still["votes"]) == ("pending", [])


async def test_details_shows_the_full_trail_to_pool_members_only(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND, context={"reason": "charged twice"})
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")

    await stack.slack.click(CHLOE, channel=TIER1, action_id=ActionId.DETAILS)
    modal = await stack.slack.wait_for_modal(CHLOE)
    shown = repr(modal.data["blocks"])
    assert body["id"] in shown and "charged twice" in shown
    assert "request.created" in shown and "click.refused" in shown and "not_in_pool" in shown
    assert "4111111111111111" not in shown and "ana@example.com" not in shown

    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.DETAILS)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="Only members")
    assert stack.slack.modal(OUTSIDER) is None


async def test_votes_and_the_decision_go_to_the_cards_thread(stack: Stack) -> None:
    await stack.agent().ask("close_account", {"customer_id": 4411})
    card = await stack.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)
    await stack.slack.click(DEV, channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_until(
        lambda: any("approved (1 of 2)" in m.text for m in stack.slack.thread(TIER2, card.ts)), what="the vote note"
    )
    await stack.slack.click(ERIN, channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_until(
        lambda: any("*Approved* by" in m.text for m in stack.slack.thread(TIER2, card.ts)), what="the decision note"
    )
    texts = [m.text for m in stack.slack.thread(TIER2, card.ts)]
    assert [t for t in texts if "approved (" in t] == [
        f":white_check_mark: <@{DEV}> approved (1 of 2).",
        f":white_check_mark: <@{ERIN}> approved (2 of 2).",
    ]
    assert texts.index(next(t for t in texts if "*Approved* by" in t)) == len(texts) - 1


async def test_sample_mode_posts_an_after_the_fact_card_without_buttons(stack: Stack) -> None:
    status, body = await stack.agent("lab").ask("spot_check", {"host": "db-1"})
    assert (status, body["status"], body["mode"]) == (200, "auto_approved", "sample")
    card = await stack.slack.wait_for_message(CROWD, text=body["id"])
    assert not action_ids(card) & {ActionId.APPROVE, ActionId.REJECT}
    assert "Auto-approved" in repr(card.blocks)


async def test_no_pool_can_serve_fails_closed_and_tells_the_admins(stack: Stack) -> None:
    lab = stack.agent("lab")
    status, own = await lab.ask("solo_change", {"x": 1}, context={"on_behalf_of": SOLO})
    assert (status, own["status"], own["decision"]["by"]) == (200, "rejected", "policy")
    assert "no reviewer pool can serve" in own["decision"]["reason"] and "solo" in own["decision"]["reason"]
    status, nowhere = await lab.ask("unplaced_change", {"x": 1})
    assert (status, nowhere["status"]) == (200, "rejected")
    assert "has no channel" in nowhere["decision"]["reason"]

    def dms() -> list[str]:
        return [
            c.args.get("text", "") for c in stack.slack.calls("chat.postMessage") if c.args.get("channel") == LAB_ADMIN
        ]

    await stack.slack.wait_until(lambda: len(dms()) >= 2, what="the admin DMs")
    assert any("solo_change" in t and "rejected without review" in t for t in dms())
    assert any("unplaced_change" in t for t in dms())
    assert stack.slack.messages("C0SOLO") == []
    # Someone else's request to the same pool is reviewed as usual.
    _, normal = await lab.ask("solo_change", {"x": 2})
    assert normal["status"] == "pending"
    await stack.slack.wait_for_message("C0SOLO", action_id=ActionId.APPROVE)


async def test_clicks_on_many_cards_at_once_are_each_counted_and_a_bad_one_fails_alone(stack: Stack) -> None:
    """Clicks on different requests that arrive together share a unit of work (bot.service.ballots);
    each still gets its own outcome, and a click on a request that does not exist fails alone."""
    agent = stack.agent("lab")
    asked = [await agent.ask("crowd_vote", {"what": f"switch {n}"}) for n in range(8)]
    ids = [body["id"] for _, body in asked]
    cards = [await stack.slack.wait_for_message(CROWD, action_id=ActionId.APPROVE, text=i) for i in ids]

    # Two approvals each (the second decides), all sent at once, and one click on an unknown request.
    clicks = [
        stack.emulator.click(user, channel=CROWD, message_ts=card.ts, action_id=ActionId.APPROVE)
        for card in cards
        for user in CROWD_MEMBERS[:2]
    ]
    unknown = stack.runtime.reviews.vote(
        ref=CardRef(t="lab", r="no-such-request"),
        user=CROWD_MEMBERS[3],
        choice=Choice.APPROVE,
        reason=None,
    )
    *deliveries, missing = await asyncio.gather(*clicks, unknown, return_exceptions=True)
    assert all(not isinstance(d, BaseException) and d.ok for d in deliveries)
    assert isinstance(missing, NotFound)

    for request_id in ids:
        _, done = await agent.call("GET", f"/v1/requests/{request_id}", wait=10)
        assert done["status"] == "approved"
        assert sorted(v["user"] for v in done["votes"]) == sorted(CROWD_MEMBERS[:2])
        kinds = [r.kind for r in await stack.audit("lab", request_id)]
        assert kinds.count("vote.cast") == 2 and kinds.count("request.decided") == 1


async def test_a_rejection_without_a_reason_is_refused_by_the_service_not_only_by_the_modal(stack: Stack) -> None:
    """The modal asks for a reason; a caller that skips it (another client of the use case) is refused too,
    audited, and no vote is cast."""
    status, body = await stack.agent("lab").ask("crowd_vote", {"what": "no reason"})
    assert status == 202
    await stack.slack.wait_for_message(CROWD, text=body["id"])
    ref = CardRef(t="lab", r=body["id"])
    for reason in (None, "   "):
        outcome = await stack.runtime.reviews.vote(ref=ref, user=CROWD_MEMBERS[0], choice=Choice.REJECT, reason=reason)
        assert outcome.refusal is Refusal.REASON_REQUIRED
    records = await stack.audit("lab", body["id"])
    assert [r.payload["refusal"] for r in records if r.kind == "click.refused"] == ["reason_required"] * 2
    _, still = await stack.agent("lab").call("GET", f"/v1/requests/{body['id']}")
    assert still["status"] == "pending" and still["votes"] == []


async def test_the_card_says_who_can_still_approve(stack: Stack) -> None:
    from tests.e2e.conftest import DEV, ERIN

    status, body = await stack.agent().ask("close_account", {"customer_id": 4411})  # tier 2, two approvals
    assert status == 202
    card = await stack.slack.wait_for_message("C0SUPPORT2", text=body["id"])
    assert f"Can approve: <@{DEV}> <@{ERIN}>" in repr(card.blocks)
    await stack.slack.click(DEV, channel="C0SUPPORT2", action_id=ActionId.APPROVE, message_ts=card.ts)
    await stack.slack.wait_for_message(
        "C0SUPPORT2", predicate=lambda m: m.ts == card.ts and f"Can approve: <@{ERIN}>'" in repr(m.blocks)
    )
