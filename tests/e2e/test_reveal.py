"""Reveal on demand: a masked param shown to one eligible reviewer, audited (who, which field, never the value).

acme-support's ``process_refund`` masks ``customer.email`` (revealable) and ``card_number`` (``reveal: false``).
"""

from __future__ import annotations

from typing import Any

from bot.ids import ActionId, BlockId
from bot.payloads import CardRef
from bot.sandbox.testing import action_ids, message_text
from policy.sensitive import canonical_json
from tests.e2e.conftest import ADA, BEN, CHLOE, OUTSIDER, TIER1, Stack, refund
from tests.hitl.helpers import hitl

EMAIL, CARD = "ana@example.com", "4111111111111111"


def everything_in_slack_channels(stack: Stack) -> str:
    """Every message and thread reply in every channel (ephemerals excluded: only their reader sees them)."""
    channels = stack.emulator.workspace.channels.values()
    return "\n".join(message_text(m) for channel in channels for m in channel.messages)


async def audit_text(stack: Stack, request_id: str) -> str:
    return "\n".join(canonical_json(r.payload) for r in await stack.audit("acme-support", request_id))


async def kinds(stack: Stack, request_id: str, kind: str) -> list[tuple[str | None, dict[str, Any]]]:
    return [(r.actor, dict(r.payload)) for r in await stack.audit("acme-support", request_id) if r.kind == kind]


async def reveal_button_on(stack: Stack, request_id: str) -> str:
    """A stale card (a message the bot posted earlier) that still has a Reveal button for ``request_id``: its ts."""
    ref = CardRef(t="acme-support", r=request_id).dumps()
    button = {"type": "button", "text": {"type": "plain_text", "text": "Reveal"}, "action_id": ActionId.REVEAL.value,
              "value": ref}  # fmt: skip
    old = [{"type": "actions", "block_id": BlockId.CARD_ACTIONS.value, "elements": [button]}]
    posted = await stack.runtime.bolt.client.chat_postMessage(channel=TIER1, text="an older card", blocks=old)
    return str(posted["ts"])


async def test_a_reviewer_reveals_a_masked_field_only_to_themselves_and_it_is_audited(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("R-1"))
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.REVEAL)
    assert EMAIL not in message_text(card) and CARD not in message_text(card)

    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.REVEAL)
    note = await stack.slack.wait_for_ephemeral(BEN, text=EMAIL)
    assert "customer.email" in note.text
    assert CARD not in note.text and "`card_number`" in note.text  # reveal: false: never shown, said so

    assert await kinds(stack, body["id"], "sensitive.revealed") == [
        (BEN, {"field": "customer.email", "stage": 0, "policy_version": 1})
    ]
    assert EMAIL not in await audit_text(stack, body["id"]) and CARD not in await audit_text(stack, body["id"])
    assert not [e for e in stack.slack.ephemerals(CHLOE) + stack.slack.ephemerals(ADA) if EMAIL in e.text]
    # Revealing is not voting: the request still waits, and Ben's own vote still counts afterwards.
    _, still = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (still["status"], still["votes"]) == ("pending", [])
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    _, done = await stack.agent().call("GET", f"/v1/requests/{body['id']}", wait=5)
    assert done["status"] == "approved"
    await stack.slack.wait_for_message(TIER1, predicate=lambda m: "Approved" in message_text(m))
    assert EMAIL not in everything_in_slack_channels(stack) and CARD not in everything_in_slack_channels(stack)


async def test_an_outsider_and_the_person_acted_for_are_refused_and_audited(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("R-2"), context={"on_behalf_of": CHLOE})
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.REVEAL)

    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.REVEAL)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")
    await stack.slack.click(CHLOE, channel=TIER1, action_id=ActionId.REVEAL)
    await stack.slack.wait_for_ephemeral(CHLOE, text="acts on your behalf")

    refused = await kinds(stack, body["id"], "sensitive.reveal_refused")
    assert [(actor, p["refusal"]) for actor, p in refused] == [(OUTSIDER, "not_in_pool"), (CHLOE, "own_request")]
    assert await kinds(stack, body["id"], "sensitive.revealed") == []
    assert not [e for e in stack.slack.ephemerals(OUTSIDER) + stack.slack.ephemerals(CHLOE) if EMAIL in e.text]


async def test_a_field_that_may_not_be_revealed_is_not_offered_nor_revealed(stack: Stack) -> None:
    # No email: the only masked field is the card number, which the manifest says is never revealed.
    params = {**refund("R-3"), "customer": {"name": "Ana"}}
    _, body = await stack.agent().ask("process_refund", params)
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    assert ActionId.REVEAL not in action_ids(card)

    # A Reveal button that is still around (an older card) reveals nothing either.
    ts = await reveal_button_on(stack, body["id"])
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.REVEAL, message_ts=ts)
    note = await stack.slack.wait_for_ephemeral(BEN, text="may be revealed")
    assert CARD not in note.text
    refused = await kinds(stack, body["id"], "sensitive.reveal_refused")
    assert [(actor, p["refusal"]) for actor, p in refused] == [(BEN, "not_revealable")]


async def test_once_decided_nothing_is_revealed_and_the_card_offers_no_reveal(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("R-4"))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.REVEAL)
    await stack.slack.click(ADA, channel=TIER1, action_id=ActionId.APPROVE)
    decided = await stack.slack.wait_for_message(TIER1, predicate=lambda m: "Approved" in message_text(m))
    assert ActionId.REVEAL not in action_ids(decided)

    ts = await reveal_button_on(stack, body["id"])
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.REVEAL, message_ts=ts)
    note = await stack.slack.wait_for_ephemeral(BEN, text="has been decided")
    assert EMAIL not in note.text
    refused = await kinds(stack, body["id"], "sensitive.reveal_refused")
    assert [(actor, p["refusal"]) for actor, p in refused] == [(BEN, "already_decided")]
    assert await kinds(stack, body["id"], "sensitive.revealed") == []


async def test_hitl_show_lists_who_revealed_which_field(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("R-5"))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.REVEAL)
    for user in (BEN, ADA):
        await stack.slack.click(user, channel=TIER1, action_id=ActionId.REVEAL)
        await stack.slack.wait_for_ephemeral(user, text=EMAIL)
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.REVEAL)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")

    text = await hitl(stack, CHLOE, f"show {body['id']}")
    assert "*Reveals*" in text
    assert f"<@{BEN}> revealed `customer.email`" in text and f"<@{ADA}> revealed `customer.email`" in text
    assert f"sensitive.reveal_refused <@{OUTSIDER}> reveal refused (not_in_pool)" in text
    assert EMAIL not in text and CARD not in text
