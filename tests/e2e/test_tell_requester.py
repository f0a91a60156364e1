"""Telling the requester: the person a reviewed request was made for (``context.on_behalf_of``) gets a DM
when it is decided (outcome, by whom, why), unless the tenant turns it off (``slack: {notify_requester:
false}``); never for a request no person reviewed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.ids import ActionId
from bot.sandbox.seed import AGENT_OWNER
from bot.sandbox.testing import message_text
from bot.service.effects import requester_key
from store.models import OutboxItem
from store.uow import uow
from tests.e2e.conftest import BEN, CROWD, CROWD_MEMBERS, TIER1, Stack, eventually, refund


@pytest.fixture
def manifests(manifests: Path) -> Path:
    """The example manifests, with the ``lab`` tenant's requester DMs turned off."""
    lab = manifests / "lab.yaml"
    lab.write_text(lab.read_text() + "slack:\n  notify_requester: false\n")
    return manifests


async def _queued(stack: Stack, request_id: str) -> bool:
    """Whether telling the requester of ``request_id`` was ever queued (delivered or not)."""
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        found = await tx.session.scalars(select(OutboxItem).where(OutboxItem.dedupe_key == requester_key(request_id)))
        return found.first() is not None


def _dms(stack: Stack, user: str) -> list[str]:
    return [message_text(m) for m in stack.slack.messages(stack.emulator.api.dm_channel(user).id)]


async def test_the_requester_is_told_the_outcome_who_decided_and_why(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("R-1"), context={"on_behalf_of": AGENT_OWNER})
    assert body["status"] == "pending"
    await stack.slack.wait_for_message(TIER1, text="R-1", action_id=ActionId.APPROVE)
    await stack.reject(BEN, "the order was already refunded")

    dm = await stack.slack.wait_for_message(stack.emulator.api.dm_channel(AGENT_OWNER).id, text=body["id"])
    said = message_text(dm)
    assert "made on your behalf" in said and "to Ana (order R-1)" in said
    assert "*Rejected*" in said and f"by <@{BEN}>" in said and "the order was already refunded" in said
    assert await _queued(stack, body["id"])


async def test_no_dm_when_nobody_reviewed_it_or_it_was_made_for_nobody(stack: Stack) -> None:
    _, auto = await stack.agent().ask(
        "process_refund", {**refund("R-2"), "amount": 120}, context={"on_behalf_of": AGENT_OWNER}
    )
    assert auto["status"] == "auto_approved"
    # The API takes only Slack user ids in on_behalf_of; a request made for nobody tells nobody.
    _, body = await stack.agent().ask("process_refund", refund("R-3"))
    assert body["status"] == "pending", body
    card = await stack.slack.wait_for_message(TIER1, text="R-3", action_id=ActionId.APPROVE)
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    # The decision's own note in the card's thread was queued with it: once it is there, so would the DM be.
    await stack.slack.wait_until(
        lambda: any("*Approved*" in message_text(m) for m in stack.slack.thread(TIER1, card.ts)),
        what="the decision noted in the thread",
    )
    assert not await _queued(stack, auto["id"]) and not await _queued(stack, body["id"])
    assert _dms(stack, AGENT_OWNER) == []


async def test_no_dm_when_the_tenant_turns_it_off(stack: Stack) -> None:
    _, body = await stack.agent("lab").ask("crowd_vote", {"what": "x"}, context={"on_behalf_of": AGENT_OWNER})
    await stack.slack.wait_for_message(CROWD, action_id=ActionId.APPROVE)
    for user in CROWD_MEMBERS[:2]:
        await stack.slack.click(user, channel=CROWD, action_id=ActionId.APPROVE)

    async def decided() -> str | None:
        _, now = await stack.agent("lab").call("GET", f"/v1/requests/{body['id']}")
        return None if now["status"] == "pending" else str(now["status"])

    assert await eventually(decided, what="the crowd vote decided") == "approved"
    assert not await _queued(stack, body["id"])
    assert _dms(stack, AGENT_OWNER) == []
