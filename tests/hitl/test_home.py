"""The App Home: each reviewer's own queue across pools and tenants, kept fresh after votes and decisions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import cast

from bot.home.answers import HomeAnswer
from bot.home.blocks import home_block_id
from bot.home.service import HomeService
from bot.ids import ActionId
from bot.sandbox.testing import message_text
from bot.sandbox.workspace import View
from bot.service.effects import Effect
from bot.slack import home
from store import ItemState, uow
from store.models import OutboxItem
from store.stats import PENDING_READ_LIMIT
from tests.e2e.conftest import ADA, BEN, CHLOE, DEV, ERIN, HAL, OUTSIDER, TIER1, Stack
from tests.hardening.conftest import eventually
from tests.hitl.helpers import hitl

REFUND = {"amount": 620, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111", "order_id": "A-1"}


def home_text(view: View) -> str:
    from bot.sandbox.workspace import Message

    return message_text(Message("", "", "", view.data["blocks"], ""))


async def home_of(stack: Stack, user: str, *, has: str | None = None, lacks: str | None = None) -> str:
    """``user``'s Home once it shows ``has`` and not ``lacks`` (published on open, or refreshed after a vote)."""

    def probe() -> str | None:
        view = stack.slack.home(user)
        if view is None:
            return None
        text = home_text(view)
        ok = (has is None or has in text) and (lacks is None or lacks not in text)
        return text if ok else None

    return await stack.slack.wait_until(probe, what=f"{user}'s home with {has!r} and without {lacks!r}")


async def click_home(stack: Stack, user: str, action_id: ActionId, request_id: str) -> None:
    """``user`` clicks ``action_id`` on ``request_id``'s item in the Home they have open."""
    view = stack.slack.home(user)
    assert view is not None
    await stack.emulator.click(user, view_id=view.id, action_id=action_id, block_id=home_block_id(request_id))


async def test_home_queue_ordered_by_risk_then_age_with_card_buttons_refreshed_after_votes(stack: Stack) -> None:
    agent = stack.agent()
    _, credit = await agent.ask("send_goodwill_credit", {"amount": 40, "customer": {"tier": "standard"}})  # low
    _, refund = await agent.ask("process_refund", REFUND)  # high
    _, mine = await agent.ask("process_refund", {**REFUND, "order_id": "A-2"}, context={"on_behalf_of": ADA})
    _, close = await agent.ask("close_account", {"customer_id": 4411})  # critical, tier 2, two approvals
    assert {b["status"] for b in (credit, refund, mine, close)} == {"pending"}

    await stack.slack.open_home(ADA)
    text = await home_of(stack, ADA, has=refund["id"])
    # Highest risk first, then oldest; not what acts on her behalf, not another pool's.
    assert text.index(refund["id"]) < text.index(credit["id"])
    assert mine["id"] not in text and close["id"] not in text
    assert (
        "`support_tier_1` · *acme-support* · :large_green_circle: available" in text
        and "admin of *acme-support*" in text
    )
    blocks = stack.slack.home(ADA).data["blocks"]  # type: ignore[union-attr]
    buttons = {
        request["id"]: [e["action_id"] for b in blocks if b.get("block_id") == home_block_id(request["id"])
                        for e in b["elements"]]
        for request in (refund, credit)
    }  # fmt: skip
    # The card's buttons, and Edit & approve where the action has `editable` params (refunds do, credits not).
    assert buttons[credit["id"]] == [ActionId.APPROVE, ActionId.REJECT, ActionId.DETAILS]
    assert buttons[refund["id"]] == [ActionId.APPROVE, ActionId.REJECT, ActionId.DETAILS, ActionId.EDIT]

    await stack.slack.open_home(DEV)
    text = await home_of(stack, DEV, has=close["id"])
    assert refund["id"] not in text

    # A vote in the channel decides the refund: Ada's Home drops it without her reopening it.
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="order A-1")
    await home_of(stack, ADA, lacks=refund["id"])

    # Voting from Home: the card's listener counts it, and the card in the channel shows it.
    await click_home(stack, ADA, ActionId.APPROVE, credit["id"])
    _, decided = await agent.call("GET", f"/v1/requests/{credit['id']}", wait=5)
    assert decided["status"] == "approved" and decided["decision"]["by"] == ADA
    text = await home_of(stack, ADA, lacks=credit["id"])
    assert "Nothing waits for your vote" in text

    # One of two approvals: the voter's queue drops it, the other reviewer's keeps it.
    await stack.slack.open_home(ERIN)
    await home_of(stack, ERIN, has=close["id"])
    await click_home(stack, DEV, ActionId.APPROVE, close["id"])
    await home_of(stack, DEV, lacks=close["id"])
    text = await home_of(stack, ERIN, has="approvals 1 of 2")
    assert close["id"] in text

    # Details and Reject from Home open their modals, as from a card.
    await click_home(stack, ERIN, ActionId.DETAILS, close["id"])
    modal = await stack.slack.wait_for_modal(ERIN)
    assert modal.data["title"]["text"] == "Request details"


async def test_a_refused_click_from_home_is_explained_by_dm(stack: Stack) -> None:
    _, refund = await stack.agent().ask("process_refund", REFUND)
    await stack.slack.open_home(CHLOE)
    await home_of(stack, CHLOE, has=refund["id"])
    stale = stack.slack.home(CHLOE)
    assert stale is not None
    stale_blocks = [dict(b) for b in stale.data["blocks"]]

    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="Refund")
    await home_of(stack, CHLOE, lacks=refund["id"])
    # Chloe clicks on a Home that had not refreshed yet: put the old blocks back and click.
    stale.data["blocks"] = stale_blocks
    delivery = await stack.emulator.click(
        CHLOE, view_id=stale.id, action_id=ActionId.APPROVE, block_id=home_block_id(refund["id"])
    )
    assert delivery.ok
    dm = stack.emulator.api.dm_channel(CHLOE).id
    await stack.slack.wait_for_message(dm, text="already been decided")


async def test_home_spans_tenants_and_shows_away_state(stack: Stack) -> None:
    _, platform = await stack.agent("platform").ask("provision_test_env", {"size": "small"})
    _, refund = await stack.agent().ask("process_refund", REFUND)
    await hitl(stack, HAL, "pool add platform_team <@U0BEN|ben>")
    await hitl(stack, BEN, "acme-support pool away support_tier_1")
    await stack.slack.open_home(BEN)
    text = await home_of(stack, BEN, has=platform["id"])
    assert refund["id"] in text  # away members may still vote
    assert "`support_tier_1` · *acme-support* · :palm_tree: away" in text
    assert "`platform_team` · *platform* · :large_green_circle: available" in text

    await stack.slack.open_home(OUTSIDER)
    text = await home_of(stack, OUTSIDER)
    assert "not in any reviewer pool yet" in text and refund["id"] not in text and platform["id"] not in text


async def test_a_batch_of_refreshes_publishes_each_persons_home_once() -> None:
    published: list[str] = []

    class Reviewers:
        single_reads = 0

        async def homes_to_refresh(self, tenant: str, request_id: str, users: list[str] | None) -> list[str]:
            self.single_reads += 1
            return {"r1": [ADA, BEN], "r2": [BEN, CHLOE], "r3": [ADA]}[request_id]

        async def homes_to_refresh_many(self, refreshes: list[tuple[str, str, list[str] | None]]) -> list[list[str]]:
            return [{"r1": [ADA, BEN], "r2": [BEN, CHLOE], "r3": [ADA]}[r] for _, r, _ in refreshes]

        async def homes(self, users: list[str]) -> list[HomeAnswer]:
            now = datetime(2025, 1, 1, tzinfo=UTC)
            return [HomeAnswer(user=u, items=(), memberships=(), admin_of=(), now=now) for u in users]

    async def publish(user_id: str, view: dict[str, object]) -> None:
        published.append(user_id)

    reviewers = Reviewers()
    refresher = home.HomeRefresher(cast(HomeService, reviewers), publish)

    def item(n: int, request_id: str) -> OutboxItem:
        return OutboxItem(id=n, tenant="acme-support", kind=Effect.REFRESH_HOMES, payload={"request_id": request_id})

    batch = [item(n, request_id) for n, request_id in enumerate(("r1", "r2", "r3"))]
    await refresher.begin_pass(batch)
    for one in batch:
        await refresher.deliver(one)
    assert sorted(published) == [ADA, BEN, CHLOE]  # three decisions, each person's Home once

    await refresher.begin_pass([item(4, "r3")])  # the next batch announces newer changes: publish again
    await refresher.deliver(item(4, "r3"))
    assert published[3:] == [ADA]
    assert reviewers.single_reads == 0  # whose Homes to publish was read ahead, once a batch


async def test_only_homes_that_were_ever_opened_are_refreshed_after_a_decision(stack: Stack) -> None:
    await stack.slack.open_home(ADA)
    await home_of(stack, ADA, has="Nothing waits for your vote")
    _, refund = await stack.agent().ask("process_refund", REFUND)
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="order A-1")
    _, done = await stack.agent().call("GET", f"/v1/requests/{refund['id']}", wait=5)
    assert done["status"] == "approved"
    # Ada, who opened her Home, sees it refreshed (the decision reached her queue)...
    await stack.slack.wait_until(
        lambda: [c for c in stack.slack.calls("views.publish") if c.args.get("user_id") == ADA][1:] or None,
        what="Ada's Home re-published after the decision",
    )
    # ...while Ben and Chloe, in the same pool but without a Home tab open ever, get no publish at all.
    await eventually(lambda: _outbox_empty(stack), what="every refresh delivered")
    published = {c.args.get("user_id") for c in stack.slack.calls("views.publish")}
    assert published == {ADA}


async def _outbox_empty(stack: Stack) -> bool:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return not await tx.outbox.inspect(now=stack.runtime.clock.now(), states=[ItemState.PENDING, ItemState.LEASED])


async def test_a_critical_request_behind_two_hundred_older_ones_still_shows(stack: Stack) -> None:
    """The Home reads a bounded number of a tenant's pending requests: the riskiest, not the oldest."""
    agent = stack.agent()
    older = await asyncio.gather(
        *(agent.ask("process_refund", {**REFUND, "order_id": f"B-{n}"}) for n in range(PENDING_READ_LIMIT))
    )
    assert {status for status, _ in older} == {202}
    _, close = await agent.ask("close_account", {"customer_id": 4412})  # critical, tier 2
    await stack.slack.open_home(DEV)
    await home_of(stack, DEV, has=close["id"])
