"""Edit then approve (an action's `editable:` params) through the whole service and the Slack emulator: a
reviewer edits a request in a modal typed from its values, and the policy judges the edited params again.
Within the same route the editor's approval decides, and the agent gets the edited params, their digest and a
receipt over them; an edit that needs another pool moves the request there (two approvals, a new card, the old
one closed); an edit a `deny_if` denies is refused and changes nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from countersign_client import AsyncCountersign
from countersign_client.receipts import ReceiptInvalid, verify_receipt

from bot.ids import EDIT_FIELD, EDIT_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.workspace import Message
from policy import params_sha256
from tests.e2e.conftest import MANIFESTS, OUTSIDER, Stack, eventually
from tests.hitl.helpers import hitl

SUPPORT, FINANCE = "C0SHOPSUP", "C0SHOPFIN"
SAM, SUE = "U0SAMSUP", "U0SUESUP"  # support
FAY, FRED = "U0FAYFIN", "U0FREDFIN"  # finance
SHOP = """\
tenant: shop
admins: [U0SAMSUP]
pools:
  support: {channel: C0SHOPSUP, members: [U0SAMSUP, U0SUESUP]}
  finance: {channel: C0SHOPFIN, members: [U0FAYFIN, U0FREDFIN]}
actions:
  process_refund:
    params: [amount, note, card_number, express]
    if: amount > 100
    deny_if: amount > 10000
    deny_reason: Refunds over 10k go through the finance system
    reviewer_pool: support
    timeout: 10m
    sensitive: [card_number]
    editable: [amount, note, express]
    rules:
      - if: amount > 5000
        reviewer_pool: finance
        approvals: 2
  rotate_keys:
    params: [scope]
    if: scope != "test"
    editable: [scope]
    require:
      - {pool: support, approvals: 1}
      - {pool: finance, approvals: 1}
tests:
  - action: process_refund
    params: {amount: 620}
    expect: {outcome: review, pool: support, approvals: 1}
  - action: process_refund
    params: {amount: 6000}
    expect: {outcome: review, pool: finance, approvals: 2}
"""
ASKED = {"amount": 620, "note": "parcel lost", "card_number": "4111111111111111", "express": False}


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, directory)
    (directory / "shop.yaml").write_text(SHOP)
    return directory


def shown(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def field(path: str) -> str:
    return f"{EDIT_FIELD}{path}/{EDIT_INPUT}"


async def _read_if(stack: Stack, request_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    _, resource = await stack.agent("shop").call("GET", f"/v1/requests/{request_id}")
    return resource if ready(resource) else None


async def _asked(stack: Stack) -> dict[str, Any]:
    status, body = await stack.agent("shop").ask("process_refund", ASKED)
    assert (status, body["status"], body["pool"]) == (202, "pending", "support")
    return body


async def _edit(stack: Stack, user: str, inputs: dict[str, Any], *, channel: str = SUPPORT) -> None:
    """``user`` presses Edit & approve on the newest card in ``channel`` and submits ``inputs``."""
    await stack.slack.click(user, channel=channel, action_id=ActionId.EDIT)
    modal = await stack.slack.wait_for_modal(user, callback_id=CallbackId.EDIT_SUBMIT)
    # Typed from the request's values: a number input, a text input and a checkbox, the card number absent.
    elements = {b["block_id"]: b["element"] for b in modal.data["blocks"] if b["type"] == "input"}
    assert elements[f"{EDIT_FIELD}amount"]["type"] == "number_input"
    assert elements[f"{EDIT_FIELD}amount"]["initial_value"] == "620"
    assert elements[f"{EDIT_FIELD}note"]["initial_value"] == "parcel lost"
    assert elements[f"{EDIT_FIELD}express"]["type"] == "checkboxes"
    assert not any("card_number" in block_id for block_id in elements)
    await stack.slack.submit_modal(user, inputs, callback_id=CallbackId.EDIT_SUBMIT)


async def test_an_edit_within_the_route_approves_the_edited_params_with_a_receipt_over_them(stack: Stack) -> None:
    body = await _asked(stack)
    agent = stack.agent("shop")
    polling = asyncio.create_task(agent.call("GET", f"/v1/requests/{body['id']}", wait=30))
    await asyncio.sleep(0.2)  # the long poll is parked
    # A wrong value goes back onto its field and nothing is written.
    await _edit(stack, SAM, {field("amount"): "lots"})
    modal = await stack.slack.wait_until(
        lambda: stack.slack.modal(SAM) if stack.slack.modal(SAM) and stack.slack.modal(SAM).errors else None,
        what="the field's error",
    )
    assert modal.errors == {f"{EDIT_FIELD}amount": "'lots' is not a number."}
    await stack.slack.submit_modal(
        SAM,
        {field("amount"): "450", field("note"): "half: the rest was delivered", field("express"): ["true"],
         f"{BlockId.EDIT_REASON}/reason": "only half the parcel was lost"},
        callback_id=CallbackId.EDIT_SUBMIT,
    )  # fmt: skip
    status, answer = await polling
    assert status == 200
    edited = {**ASKED, "amount": 450, "note": "half: the rest was delivered", "express": True}
    assert (answer["status"], answer["decision"]["by"]) == ("approved", SAM)
    decision = answer["decision"]
    assert decision["edited"] is True and decision["params"] == edited
    assert decision["params_sha256"] == params_sha256("process_refund", edited)
    assert [v["user"] for v in answer["votes"]] == [SAM]

    # The receipt covers the edited params and nothing else.
    receipt = decision["receipt"]
    if receipt is None:  # the long poll came back before the decision's audit event was sealed
        sealed = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["decision"]["receipt"]), what="seal")
        receipt = sealed["decision"]["receipt"]
    client = AsyncCountersign(stack.url, api_key=stack.keys["shop"])
    keys = await client.public_keys()
    # The agent client hands back the params to run.
    read = await client.get(body["id"])
    assert read.decision is not None and read.decision.edited and read.decision.params == edited
    verify_receipt(receipt, action="process_refund", params=edited, public_keys=keys, tenant="shop")
    with pytest.raises(ReceiptInvalid) as refused:
        verify_receipt(receipt, action="process_refund", params=ASKED, public_keys=keys, tenant="shop")
    assert refused.value.reason == "params_mismatch"

    # The card and its thread show the diff; the card number stays masked everywhere.
    card = await stack.slack.wait_for_message(SUPPORT, predicate=lambda m: "Approved" in shown(m))
    assert "*amount* 620 → 450" in shown(card) and "4111111111111111" not in shown(card)
    note = await stack.slack.wait_until(
        lambda: next((m for m in stack.slack.thread(SUPPORT, card.ts) if "edited the params" in m.text), None),
        what="the edit's thread note",
    )
    assert "*amount* 620 → 450" in note.text and "only half the parcel was lost" in note.text
    # The audit holds both versions, the card number as a digest in each.
    trail = await stack.audit("shop", body["id"])
    (event,) = [e for e in trail if e.kind == "request.edited"]
    assert event.actor == SAM and event.payload["route"] == "same"
    assert event.payload["before"]["amount"] == 620 and event.payload["after"]["amount"] == 450
    assert event.payload["before"]["card_number"].startswith("sha256:")
    assert event.payload["params_sha256"] == decision["params_sha256"]


async def test_an_edit_that_needs_finance_moves_the_request_there_for_two_approvals(stack: Stack) -> None:
    body = await _asked(stack)
    await _edit(stack, SUE, {field("amount"): "6000"})
    moved = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["pool"] == "finance"), what="moved")
    # Not approved: finance needs two approvals, and Sue is not in finance, so hers does not count.
    assert (moved["status"], moved["approvals_required"], moved["votes"]) == ("pending", 2, [])
    new_card = await stack.slack.wait_for_message(FINANCE, action_id=ActionId.APPROVE)
    assert "*amount* 620 → 6000" in shown(new_card)
    await stack.slack.click(FAY, channel=FINANCE, action_id=ActionId.DETAILS)
    details = await stack.slack.wait_for_modal(FAY)
    assert "*amount* 620 → 6000" in json.dumps(details.data["blocks"], ensure_ascii=False)
    old = await stack.slack.wait_for_message(SUPPORT, predicate=lambda m: "votes here no longer count" in shown(m))
    assert ActionId.APPROVE.value not in shown(old)
    # Support may no longer vote on it; finance may.
    await stack.slack.click(SAM, channel=FINANCE, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(SAM, text="not in a reviewer pool")
    await stack.slack.click(FAY, channel=FINANCE, action_id=ActionId.APPROVE)
    half = await eventually(lambda: _read_if(stack, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    assert half["status"] == "pending"
    await stack.slack.click(FRED, channel=FINANCE, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert done["status"] == "approved" and done["decision"]["edited"] is True
    assert done["decision"]["params"]["amount"] == 6000
    trail = await stack.audit("shop", body["id"])
    (event,) = [e for e in trail if e.kind == "request.edited"]
    assert (event.payload["route"], event.payload["counted"]) == ("moved", False)
    # /hitl show gives both versions, as the card's Details did.
    shown_by_hitl = await hitl(stack, SAM, f"shop show {body['id']}")
    assert "request.edited" in shown_by_hitl and "amount 620 → 6000 (moved)" in shown_by_hitl


async def test_an_edit_a_deny_if_denies_is_refused_and_changes_nothing(stack: Stack) -> None:
    body = await _asked(stack)
    await _edit(stack, SAM, {field("amount"): "20000"})
    told = await stack.slack.wait_for_call(
        "chat.postMessage", predicate=lambda c: c.args.get("channel") == SAM and "refuses this edit" in str(c.args)
    )
    assert "Refunds over 10k go through the finance system" in str(told.args)
    trail = await eventually(lambda: _refused_in(stack, body["id"]), what="the refused edit in the audit")
    assert trail.payload["after"]["amount"] == 20000 and trail.payload["refusal"] == "policy_denies"
    _, still = await stack.agent("shop").call("GET", f"/v1/requests/{body['id']}")
    assert (still["status"], still["votes"], still["decision"]) == ("pending", [], None)
    # The request is as the agent asked: a plain Approve decides it, and the decision says it was not edited.
    await stack.slack.click(SAM, channel=SUPPORT, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert done["decision"]["edited"] is False and done["decision"]["params"] is None
    assert done["decision"]["params_sha256"] == params_sha256("process_refund", ASKED)


async def _refused_in(stack: Stack, request_id: str) -> Any:
    return next((e for e in await stack.audit("shop", request_id) if e.kind == "edit.refused"), None)


async def test_an_edit_the_policy_needs_no_review_for_approves_even_a_cross_pool_quorum(stack: Stack) -> None:
    status, body = await stack.agent("shop").ask("rotate_keys", {"scope": "prod"})
    assert (status, body["status"], body["approvals_required"]) == (202, "pending", 2)
    await stack.slack.click(SUE, channel=SUPPORT, action_id=ActionId.EDIT)
    await stack.slack.wait_for_modal(SUE, callback_id=CallbackId.EDIT_SUBMIT)
    await stack.slack.submit_modal(SUE, {field("scope"): "test"}, callback_id=CallbackId.EDIT_SUBMIT)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert (done["status"], done["decision"]["by"], done["decision"]["params"]) == ("approved", SUE, {"scope": "test"})
    trail = await stack.audit("shop", body["id"])
    assert [e.payload["route"] for e in trail if e.kind == "request.edited"] == ["approved"]


async def test_a_click_on_a_card_drawn_before_an_edit_is_refused_not_counted_for_the_edited_params(
    stack: Stack,
) -> None:
    """Finance needs two approvals. Fred edits the amount while the card's update is held up at Slack; Fay's
    Approve on the card as she saw it (6000) must not count for 7000: refused as stale, audited. Once the
    card shows 7000, her Approve counts and decides."""
    body = await _asked(stack)
    await _edit(stack, SUE, {field("amount"): "6000"})
    card = await stack.slack.wait_for_message(FINANCE, action_id=ActionId.APPROVE)
    stack.emulator.faults.fail_next("chat.update", error="ratelimited", times=None)  # the card is not updated
    await stack.slack.click(FRED, channel=FINANCE, action_id=ActionId.EDIT, message_ts=card.ts)
    await stack.slack.wait_for_modal(FRED, callback_id=CallbackId.EDIT_SUBMIT)
    await stack.slack.submit_modal(FRED, {field("amount"): "7000"}, callback_id=CallbackId.EDIT_SUBMIT)
    await eventually(lambda: _read_if(stack, body["id"], lambda r: len(r["votes"]) == 1), what="Fred's approval")
    assert "*amount* 620 → 6000" in shown(card)  # Fay still sees 6000

    await stack.slack.click(FAY, channel=FINANCE, action_id=ActionId.APPROVE, message_ts=card.ts)
    await stack.slack.wait_for_ephemeral(FAY, text="edited this request's params after your view")
    still = await _read_if(stack, body["id"], lambda r: True)
    assert still is not None and (still["status"], [v["user"] for v in still["votes"]]) == ("pending", [FRED])
    trail = await stack.audit("shop", body["id"])
    assert any(e.kind == "click.refused" and e.payload["refusal"] == "stale" and e.actor == FAY for e in trail)

    stack.emulator.faults.clear()
    await stack.slack.wait_for_message(FINANCE, predicate=lambda m: m.ts == card.ts and "620 → 7000" in shown(m))
    await stack.slack.click(FAY, channel=FINANCE, action_id=ActionId.APPROVE, message_ts=card.ts)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert done["status"] == "approved" and done["decision"]["params"]["amount"] == 7000


async def test_an_edit_from_a_form_drawn_before_another_edit_is_refused_audited_and_changes_nothing(
    stack: Stack,
) -> None:
    body = await _asked(stack)
    await _edit(stack, SUE, {field("amount"): "6000"})  # to finance, two approvals
    card = await stack.slack.wait_for_message(FINANCE, action_id=ActionId.EDIT)
    for reviewer in (FAY, FRED):  # both open the form on the card showing 6000
        await stack.slack.click(reviewer, channel=FINANCE, action_id=ActionId.EDIT, message_ts=card.ts)
        await stack.slack.wait_for_modal(reviewer, callback_id=CallbackId.EDIT_SUBMIT)
    await stack.slack.submit_modal(FRED, {field("amount"): "7000"}, callback_id=CallbackId.EDIT_SUBMIT)
    await eventually(lambda: _read_if(stack, body["id"], lambda r: len(r["votes"]) == 1), what="Fred's edit")
    await stack.slack.submit_modal(FAY, {field("amount"): "6500"}, callback_id=CallbackId.EDIT_SUBMIT)

    await stack.slack.wait_for_call(
        "chat.postMessage", predicate=lambda c: c.args.get("channel") == FAY and "out of date" in str(c.args)
    )
    now = await _read_if(stack, body["id"], lambda r: True)
    assert now is not None and [v["user"] for v in now["votes"]] == [FRED] and now["status"] == "pending"
    refused = await eventually(lambda: _refused_in(stack, body["id"]), what="the stale form in the audit")
    assert (refused.actor, refused.payload["refusal"]) == (FAY, "stale_form")
    edits = [e.payload["after"]["amount"] for e in await stack.audit("shop", body["id"]) if e.kind == "request.edited"]
    assert edits == [6000, 7000]  # Fay's 6500 never applied


async def test_edit_and_approve_from_the_app_home_queue(stack: Stack) -> None:
    """The Home queue offers Edit & approve where the card does, for those who may vote; the same modal follows."""
    body = await _asked(stack)
    await stack.slack.open_home(SUE)
    home = await stack.slack.wait_for_home(SUE, text="Edit & approve")
    [actions] = [b for b in home.data["blocks"] if b.get("block_id", "").endswith(body["id"])]
    assert [e["action_id"] for e in actions["elements"]][-1] == ActionId.EDIT
    delivery = await stack.slack.click_in_view(SUE, action_id=ActionId.EDIT, home=True)
    assert delivery.ok, delivery.error
    await stack.slack.wait_for_modal(SUE, callback_id=CallbackId.EDIT_SUBMIT)
    await stack.slack.submit_modal(SUE, {field("amount"): "300"}, callback_id=CallbackId.EDIT_SUBMIT)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] == "approved"), what="approval")
    assert (done["decision"]["by"], done["decision"]["params"]["amount"]) == (SUE, 300)


async def test_a_delegates_edit_that_needs_no_review_is_decided_for_the_member_they_stand_in_for(
    stack: Stack,
) -> None:
    said = await hitl(stack, SUE, f"shop delegate <@{OUTSIDER}|olive>")
    assert "votes for you" in said, said
    _, body = await stack.agent("shop").ask("rotate_keys", {"scope": "prod"})
    card = await stack.slack.wait_for_message(SUPPORT, action_id=ActionId.EDIT)
    await stack.slack.click(OUTSIDER, channel=SUPPORT, action_id=ActionId.EDIT)
    await stack.slack.wait_for_modal(OUTSIDER, callback_id=CallbackId.EDIT_SUBMIT)
    await stack.slack.submit_modal(OUTSIDER, {field("scope"): "test"}, callback_id=CallbackId.EDIT_SUBMIT)
    done = await eventually(lambda: _read_if(stack, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert (done["status"], done["decision"]["by"]) == ("approved", OUTSIDER)
    note = await stack.slack.wait_until(
        lambda: next((m for m in stack.slack.thread(SUPPORT, card.ts) if "*Approved*" in m.text), None),
        what="the decision's note",
    )
    assert f"*Approved* by <@{OUTSIDER}> (for <@{SUE}>)" in note.text, note.text
