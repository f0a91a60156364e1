"""The App Home's policy form (#20 item 2): an admin or policy editor proposes a change from a modal
instead of typing /hitl policy set; the same checks, two-person rule and versions apply."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.ids import POLICY_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.testing import message_text
from bot.sandbox.workspace import Message, View
from bot.slack import policyform
from tests.e2e.conftest import ADA, BEN, Stack, running_stack
from tests.e2e.test_policy_changes import ACME, approve_in_dm, dm, recorded, refund, serving, versions
from tests.e2e.test_policy_changes import two_admins as two_admins  # the fixture

DEV = "U0DEV"  # reviews in support_tier_2; neither admin nor policy editor


def field(block: BlockId) -> str:
    return f"{block.value}/{POLICY_INPUT}"


def text_of(view: View) -> str:
    return message_text(Message("", "", "", view.data["blocks"], ""))


async def open_form(stack: Stack, user: str) -> View:
    """``user`` closes the modal they have open, if any, opens their App Home and presses "Policy: acme-support"."""
    while stack.slack.modal(user) is not None:
        await stack.slack.emulator.close_view(user)
    await stack.slack.open_home(user)
    home = await stack.slack.wait_for_home(user, text=f"Policy: {ACME}")
    [button] = [
        e
        for block in home.data["blocks"]
        if block.get("block_id") == "countersign.home.policy"
        for e in block["elements"]
        if e["value"] == ACME
    ]
    delivery = await stack.slack.click_in_view(user, action_id=button["action_id"], home=True, value=ACME)
    assert delivery.ok, delivery.error
    return await stack.slack.wait_for_modal(user, callback_id=CallbackId.POLICY_PROPOSE)


async def submit(stack: Stack, user: str, inputs: dict[str, Any]) -> View:
    """Submit the open form; the modal as it stands once the bot answered (its errors, or what replaced it)."""
    before = copy.deepcopy(modal.data) if (modal := stack.slack.modal(user)) else None
    delivery = await stack.slack.submit_modal(user, inputs, callback_id=CallbackId.POLICY_PROPOSE)
    assert delivery.ok, delivery.error

    def answered() -> View | None:
        modal = stack.slack.modal(user)
        if modal is None or not (modal.errors or modal.data != before):
            return None
        # A loaded machine may take the slow path (the check outlasting the ack): wait for its outcome.
        return None if "Checking your change" in text_of(modal) else modal

    return await stack.slack.wait_until(answered, what=f"the answer to {user}'s policy form")


async def test_a_threshold_change_proposed_from_the_app_home_form(db_url: str, two_admins: Path) -> None:
    async with running_stack(db_url, two_admins) as stack:
        form = await open_form(stack, ADA)
        shown = text_of(form)
        assert "acme-support* serves version 1" in shown and "`process_refund`: asks when `amount > 500`" in shown

        empty = await submit(stack, ADA, {})
        assert empty.errors == {BlockId.POLICY_ACTION.value: "Fill in one of the three: change an action, add an "
                                "action, or roll back."}  # fmt: skip
        both = await submit(stack, ADA, {field(BlockId.POLICY_ACTION): "process_refund",
                                         field(BlockId.POLICY_NEW_ACTION): "issue_voucher"})  # fmt: skip
        assert "One change at a time" in both.errors[BlockId.POLICY_ACTION.value]
        half = await submit(stack, ADA, {field(BlockId.POLICY_ACTION): "process_refund"})
        assert half.errors == {BlockId.POLICY_SETTING.value: "Fill this in too.",
                               BlockId.POLICY_VALUE.value: "Fill this in too."}  # fmt: skip
        change = {field(BlockId.POLICY_ACTION): "process_refund", field(BlockId.POLICY_SETTING): "threshold"}
        words = await submit(stack, ADA, {**change, field(BlockId.POLICY_VALUE): "lots"})
        assert words.errors == {BlockId.POLICY_VALUE.value: "`lots` is not a number."}
        # What countersign check would refuse goes back onto the field, the failing test named.
        breaking = await submit(stack, ADA, {**change, field(BlockId.POLICY_VALUE): "700"})
        # On the field; or, where the check outlasted Slack's ack (a loaded machine), in the modal in its place.
        why = breaking.errors.get(BlockId.POLICY_VALUE.value) or text_of(breaking)
        assert "breaks the manifest's test" in why and "large refunds need tier 1, then tier 2, then seniors" in why
        assert stack.slack.messages(dm(stack, BEN)) == []  # nothing was proposed
        if not breaking.errors:
            await open_form(stack, ADA)

        proposed = await submit(stack, ADA, {**change, field(BlockId.POLICY_VALUE): "600"})
        answer = text_of(proposed)
        assert "Policy change #1 proposed for acme-support" in answer and "+    threshold: 600" in answer
        assert f"<@{BEN}>" in answer and "two-person rule" in answer and "over the last 7 days" in answer
        assert proposed.data.get("submit") is None  # the form is gone: nothing more to submit

        # The same two-person rule as from /hitl: Ben approves in his DM; the next request is judged by it.
        assert "version 2" in await approve_in_dm(stack, BEN, 1)
        await serving(stack, 2)
        _, body = await stack.agent().ask("process_refund", refund(550, "from-the-form"))
        assert await recorded(stack, body) == ("auto_approved", 2)


async def test_adding_an_action_and_rolling_back_from_the_form(db_url: str, two_admins: Path) -> None:
    async with running_stack(db_url, two_admins) as stack:
        await open_form(stack, BEN)
        added = await submit(stack, BEN, {field(BlockId.POLICY_NEW_ACTION): "issue_voucher",
                                          field(BlockId.POLICY_NEW_POOL): "support_tier_2"})  # fmt: skip
        assert "new action `issue_voucher`" in text_of(added)
        assert "version 2" in await approve_in_dm(stack, ADA, 1)
        await serving(stack, 2)

        # Version 1 is offered to roll back to; version 2, served, is not.
        form = await open_form(stack, BEN)
        [rollback] = [b for b in form.data["blocks"] if b.get("block_id") == BlockId.POLICY_ROLLBACK.value]
        assert [o["value"] for o in rollback["element"]["options"]] == ["1"]
        assert "issue_voucher" in text_of(form)
        rolled = await submit(stack, BEN, {field(BlockId.POLICY_ROLLBACK): "1"})
        assert "Policy change #2 proposed" in text_of(rolled) and "roll back to version 1" in text_of(rolled)
        assert "version 3" in await approve_in_dm(stack, ADA, 2)
        [first, _, third] = await versions(stack)
        assert (third.source, third.manifest) == ("rollback", first.manifest)


async def test_only_those_who_may_change_the_policy_see_the_form(db_url: str, two_admins: Path) -> None:
    async with running_stack(db_url, two_admins, manifest_poll_seconds=0) as stack:
        await stack.slack.open_home(DEV)
        home = await stack.slack.wait_for_home(DEV, text="Your pools")
        assert "Policy:" not in text_of(home)
        # Ada's Home offers the form; then the file turns self-service off. Her Home still has the button:
        # pressed, it says why she cannot, and no form opens.
        await stack.slack.open_home(ADA)
        await stack.slack.wait_for_home(ADA, text=f"Policy: {ACME}")
        path = two_admins / f"{ACME}.yaml"
        path.write_text(path.read_text().replace("self_service: true", "self_service: false"))
        assert stack.runtime.manifest_watcher is not None
        stack.runtime.manifest_watcher.poke()
        await serving(stack, 2)
        delivery = await stack.slack.click_in_view(ADA, action_id=f"{ActionId.POLICY_OPEN.value}:0", home=True)
        assert delivery.ok, delivery.error

        def told() -> str | None:
            return next((m.text for m in stack.slack.messages(dm(stack, ADA)) if "self_service" in m.text), None)

        told_text = await stack.slack.wait_until(told, what="why the form does not open")
        assert "policy is changed only in its manifest file (self_service: false)" in told_text
        assert stack.slack.modal(ADA) is None


async def test_a_check_slower_than_slacks_three_seconds_answers_in_the_modal(
    db_url: str, two_admins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proposal not checked within the ack budget (a week of heavy traffic to simulate): the form turns
    into a progress view at once, and then into the outcome, refused or proposed."""
    monkeypatch.setattr(policyform, "ACK_BUDGET", 0.0)
    async with running_stack(db_url, two_admins) as stack:

        def shows(words: str) -> Callable[[], str | None]:
            def probe() -> str | None:
                modal = stack.slack.modal(ADA)
                return text_of(modal) if modal is not None and words in text_of(modal) else None

            return probe

        change = {field(BlockId.POLICY_ACTION): "process_refund", field(BlockId.POLICY_SETTING): "threshold"}
        await open_form(stack, ADA)
        delivery = await stack.slack.submit_modal(ADA, {**change, field(BlockId.POLICY_VALUE): "700"})
        assert delivery.effects == ["update"] and "Checking your change" in delivery.ack_body
        refused = await stack.slack.wait_until(shows("Not proposed"), what="the refusal")
        assert "breaks the manifest's test `large refunds need tier 1" in refused and "Open *Policy*" in refused

        await open_form(stack, ADA)
        await stack.slack.submit_modal(ADA, {**change, field(BlockId.POLICY_VALUE): "600"})
        proposed = await stack.slack.wait_until(shows("Policy change #1 proposed"), what="the proposal")
        assert "+    threshold: 600" in proposed
