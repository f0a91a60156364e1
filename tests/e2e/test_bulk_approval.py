"""Bulk approval from the App Home: pick several requests of one action, check them side by side, approve
them in one step; each still gets its own vote, audit event and card update, and refusals are listed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.home.bulk_blocks import BULK_OFFERS_BLOCK
from bot.ids import BULK_PICK_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.interactions import InteractionError
from bot.sandbox.testing import message_text
from bot.sandbox.workspace import Message, View
from tests.e2e.conftest import ADA, BEN, CHLOE, DEV, ERIN, TIER1, TIER2, Stack, refund

PICK = f"{BlockId.BULK_PICK}/{BULK_PICK_INPUT}"


def view_text(view: View) -> str:
    return message_text(Message("", "", "", view.data["blocks"], ""))


def pick_options(view: View) -> list[dict[str, Any]]:
    block = next(b for b in view.data["blocks"] if b.get("block_id") == BlockId.BULK_PICK)
    options: list[dict[str, Any]] = block["element"]["options"]
    return options


async def open_bulk(stack: Stack, user: str, offer: str) -> View:
    """``user`` opens their Home and presses the "Approve several" button that reads ``offer``."""
    await stack.slack.open_home(user)

    def has_offer() -> View | None:
        home = stack.slack.home(user)
        return home if home is not None and offer in view_text(home) else None

    home = await stack.slack.wait_until(has_offer, what=f"{user}'s Home offering {offer!r}")
    row = next(b for b in home.data["blocks"] if b.get("block_id") == BULK_OFFERS_BLOCK)
    button = next(e for e in row["elements"] if offer in e["text"]["text"])
    await stack.emulator.click(user, view_id=home.id, action_id=ActionId.BULK_OPEN, value=button["value"])
    return await stack.slack.wait_for_modal(user, callback_id=CallbackId.BULK_SELECT)


async def test_twenty_approved_in_one_step_two_refused_each_with_its_own_vote_audit_and_card(stack: Stack) -> None:
    agent = stack.agent()
    asked = [await agent.ask("process_refund", refund(f"B-{n:02d}")) for n in range(1, 21)]
    ids = [body["id"] for _, body in asked]
    _, own = await agent.ask("process_refund", refund("B-OWN"), context={"on_behalf_of": ADA})
    assert {body["status"] for _, body in asked} | {own["status"]} == {"pending"}
    await stack.slack.wait_until(
        lambda: len([m for m in stack.slack.messages(TIER1) if ActionId.APPROVE in repr(m.blocks)]) == 21 or None,
        what="21 cards",
    )

    # Offered: the 20 Ada may approve, not the one made on her behalf (the Home queue's rule).
    modal = await open_bulk(stack, ADA, "process_refund (20)")
    offered = [o["value"] for o in pick_options(modal)]
    assert sorted(offered) == sorted(ids) and own["id"] not in offered
    # All of them chosen to begin with.
    block = next(b for b in modal.data["blocks"] if b.get("block_id") == BlockId.BULK_PICK)
    assert [o["value"] for o in block["element"]["initial_options"]] == offered

    # She keeps 19 of them; the 20th of the selection is the request made on her behalf, slipped into
    # the submission as a forged or stale client could: the confirmation must judge it on its own.
    decided_meanwhile, left_alone = ids[4], ids[19]
    chosen = [*ids[:19], own["id"]]
    pick_options(modal).append({"text": {"type": "plain_text", "text": "forged"}, "value": own["id"]})
    delivery = await stack.emulator.submit_view(ADA, {PICK: chosen}, view_id=modal.id)
    assert delivery.ok and delivery.effects == ["update"], delivery.detail

    # The pre-flight table: the 20 side by side, what they share once, sensitive fields masked.
    check = await stack.slack.wait_for_modal(ADA, callback_id=CallbackId.BULK_CONFIRM)
    text = view_text(check)
    assert check.data["submit"]["text"] == "Approve all 20"
    assert all(rid in text for rid in chosen) and left_alone not in text
    assert "The same in all" in text and "currency" in text and "EUR" in text
    assert "4111111111111111" not in repr(check.data) and "ana@example.com" not in repr(check.data)
    row = next(b for b in check.data["blocks"] if ids[6] in b.get("text", {}).get("text", ""))
    assert [f["text"] for f in row["fields"]] == ["*order_id*\nB-07"]  # per request, only what differs
    assert text.count("will be refused") == 1  # the request on her behalf, flagged before she confirms

    # Between the check and the confirmation, Ben approves one of them on its card.
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="order B-05")
    _, body = await agent.call("GET", f"/v1/requests/{decided_meanwhile}", wait=5)
    assert (body["status"], body["decision"]["by"]) == ("approved", BEN)

    delivery = await stack.emulator.submit_view(ADA, {}, view_id=check.id)
    assert delivery.ok and delivery.effects == ["update"], delivery.detail
    result = view_text(await stack.slack.wait_for_modal(ADA))
    assert "18 of 20 approvals counted" in result
    assert "Refused (2)" in result
    assert f"`{decided_meanwhile}`: it was decided meanwhile" in result
    assert f"`{own['id']}`: it acts on your behalf" in result

    approved = [rid for rid in ids[:19] if rid != decided_meanwhile]
    assert len(approved) == 18
    for rid in approved:
        _, body = await agent.call("GET", f"/v1/requests/{rid}", wait=5)
        assert (body["status"], body["decision"]["by"], [v["user"] for v in body["votes"]]) == ("approved", ADA, [ADA])
    for rid in (own["id"], left_alone):
        _, body = await agent.call("GET", f"/v1/requests/{rid}")
        assert (body["status"], body["votes"]) == ("pending", [])

    # Each of the 18 cards shows its own decision, its buttons gone.
    def decided_cards() -> list[Message] | None:
        cards = [
            m
            for m in stack.slack.messages(TIER1)
            if any(rid in repr(m.blocks) for rid in approved) and "Approved" in repr(m.blocks)
        ]
        return cards if len(cards) == 18 else None

    cards = await stack.slack.wait_until(decided_cards, what="18 decided cards")
    assert all(ActionId.APPROVE not in repr(c.blocks) and ADA in repr(c.blocks) for c in cards)
    assert len(stack.slack.calls("chat.update")) >= 19  # 18 cards, and the one Ben decided

    # The audit: one vote per approved request, and each refusal, all marked as a bulk approval.
    votes, refusals = [], []
    for rid in chosen:
        for event in await stack.audit("acme-support", rid):
            if event.actor == ADA and event.kind == "vote.cast":
                votes.append(rid)
                assert event.payload["bulk"] is True and event.payload["choice"] == "approve"
            if event.actor == ADA and event.kind == "click.refused":
                refusals.append((rid, event.payload["refusal"], event.payload["bulk"]))
    assert sorted(votes) == sorted(approved)
    assert sorted(refusals) == sorted([(decided_meanwhile, "already_decided", True), (own["id"], "own_request", True)])

    # Her Home drops what she approved: one refund is left, so no bulk offer any more.
    await stack.slack.wait_until(
        lambda: (
            (
                (h := stack.slack.home(ADA)) is not None
                and left_alone in view_text(h)
                and approved[0] not in view_text(h)
            )
            or None
        ),
        what="Ada's refreshed Home",
    )
    home = stack.slack.home(ADA)
    assert home is not None and not any(b.get("block_id") == BULK_OFFERS_BLOCK for b in home.data["blocks"])


async def test_two_approvals_needed_count_one_each_and_a_stale_offer_explains_itself(stack: Stack) -> None:
    agent = stack.agent()
    accounts = [(await agent.ask("close_account", {"customer_id": 4400 + n}))[1] for n in range(3)]
    assert {a["approvals_required"] for a in accounts} == {2}
    await stack.slack.wait_until(lambda: len(stack.slack.messages(TIER2)) == 3 or None, what="3 cards")

    modal = await open_bulk(stack, DEV, "close_account (3)")
    ids = [o["value"] for o in pick_options(modal)]
    assert sorted(ids) == sorted(a["id"] for a in accounts)
    pair = [accounts[0]["id"], accounts[1]["id"]]
    stale_home = [dict(b) for b in stack.slack.home(DEV).data["blocks"]]  # type: ignore[union-attr]
    # Choosing nothing: the input is required, so Slack itself refuses to submit.
    with pytest.raises(InteractionError, match="required inputs missing"):
        await stack.emulator.submit_view(DEV, {PICK: []}, view_id=modal.id)

    await stack.emulator.submit_view(DEV, {PICK: pair}, view_id=modal.id)
    check = await stack.slack.wait_for_modal(DEV, callback_id=CallbackId.BULK_CONFIRM)
    assert check.data["submit"]["text"] == "Approve all 2"
    await stack.emulator.submit_view(DEV, {}, view_id=check.id)
    result = view_text(await stack.slack.wait_for_modal(DEV))
    assert "2 of 2 approvals counted" in result and "your approval counted, 1 of 2" in result
    for account in accounts[:2]:
        _, body = await agent.call("GET", f"/v1/requests/{account['id']}")
        assert (body["status"], [v["user"] for v in body["votes"]]) == ("pending", [DEV])
    await stack.slack.wait_until(
        lambda: len([m for m in stack.slack.messages(TIER2) if "1 of 2" in repr(m.blocks)]) == 2 or None,
        what="2 cards at 1 of 2",
    )

    # Erin's Home still offers all three; she decides two of them in bulk.
    modal = await open_bulk(stack, ERIN, "close_account (3)")
    await stack.emulator.submit_view(ERIN, {PICK: pair}, view_id=modal.id)
    check = await stack.slack.wait_for_modal(ERIN, callback_id=CallbackId.BULK_CONFIRM)
    await stack.emulator.submit_view(ERIN, {}, view_id=check.id)
    assert "2 of 2 approvals counted" in view_text(await stack.slack.wait_for_modal(ERIN))
    for account in accounts[:2]:
        _, body = await agent.call("GET", f"/v1/requests/{account['id']}", wait=5)
        assert body["status"] == "approved"

    # Dev approves the third on its card; the Home he saw before still has the button, and pressing it
    # now finds nothing to approve and says so in a DM instead of opening an empty modal.
    await stack.slack.click(DEV, channel=TIER2, action_id=ActionId.APPROVE, text=accounts[2]["id"])
    await stack.slack.wait_until(
        lambda: len([m for m in stack.slack.messages(TIER2) if "1 of 2" in repr(m.blocks)]) == 1 or None,
        what="the third card at 1 of 2",
    )
    home = stack.slack.home(DEV)
    assert home is not None
    home.data["blocks"] = stale_home
    modals_before = len(stack.slack.calls("views.open"))
    await stack.emulator.click(DEV, view_id=home.id, action_id=ActionId.BULK_OPEN)
    dm = stack.emulator.api.dm_channel(DEV).id
    await stack.slack.wait_for_message(dm, text="Nothing of `close_account` waits for your approval")
    assert len(stack.slack.calls("views.open")) == modals_before
    # Chloe, in another pool, is never offered tier 2's requests.
    await stack.slack.open_home(CHLOE)
    await stack.slack.wait_for_home(CHLOE)
    assert "close_account" not in view_text(stack.slack.home(CHLOE))  # type: ignore[arg-type]
