"""Deadlines, fallback and escalation, reminders and on_timeout, with time under the test's control."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bot.clock import FrozenClock
from bot.ids import ActionId
from store.uow import uow
from tests.deadlines.conftest import started
from tests.e2e.conftest import ADA, BEN, DEV, ERIN, TIER1, TIER2, Stack

SENIOR = "C0SENIOR"
FAY = "U0FAY"
REFUND = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111", "order_id": "A-9"}


async def audit_kinds(stack: Stack, tenant: str, request_id: str) -> list[str]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return [r.kind for r in await tx.audit.for_request(tenant, request_id)]


async def audit_until(stack: Stack, request_id: str, ready: Callable[[list[str]], bool]) -> list[str]:
    """The request's audit kinds once ``ready`` holds (a click is processed after Slack gets its ack)."""
    for _ in range(200):
        kinds = await audit_kinds(stack, "acme-support", request_id)
        if ready(kinds):
            return kinds
        await asyncio.sleep(0.025)
    raise AssertionError(f"audit of {request_id} never got there: {kinds}")


async def test_the_whole_chain_then_on_timeout_rejects(timed: Stack, clock: FrozenClock) -> None:
    _, req = await timed.agent().ask("process_refund", REFUND)
    await timed.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    tier1_due = int(clock.now().timestamp()) + 5 * 60
    clock.advance(5 * 60)  # tier 1's 5 minutes are up
    fired = await timed.runtime.keeper.run_due()
    assert [(f.action, f.detail) for f in fired] == [("escalated", "support_tier_2")]
    card2 = await timed.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)
    assert "<@U0DEV>" in repr(card2.blocks) and "<@U0ERIN>" in repr(card2.blocks)  # the new pool is called
    card1 = await timed.slack.wait_for_message(
        TIER1, predicate=lambda m: "Escalated to <#C0SUPPORT2>" in repr(m.blocks)
    )
    # Tier 1's card keeps its own stage's deadline beside its pool, and says tier 2's where it says it moved.
    own, escalated = repr(card1.blocks).split("Escalated to <#C0SUPPORT2>")
    assert f"Deadline <!date^{tier1_due}^" in own and "Pool `support_tier_1`" in own
    assert f"deadline <!date^{tier1_due + 5 * 60}^" in escalated
    _, mid = await timed.agent().call("GET", f"/v1/requests/{req['id']}")
    assert (mid["status"], mid["stage"], mid["pool"]) == ("pending", 1, "support_tier_2")

    clock.advance(5 * 60)
    assert [f.detail for f in await timed.runtime.keeper.run_due()] == ["senior_support"]
    await timed.slack.wait_for_message(SENIOR, action_id=ActionId.APPROVE)
    clock.advance(5 * 60)
    assert [f.action for f in await timed.runtime.keeper.run_due()] == ["expired"]
    _, done = await timed.agent().call("GET", f"/v1/requests/{req['id']}")
    assert (done["status"], done["decision"]["outcome"], done["decision"]["by"]) == ("expired", "rejected", "timeout")
    for channel in (TIER1, TIER2, SENIOR):  # every card shows the outcome, no buttons left
        await timed.slack.wait_for_message(
            channel, predicate=lambda m: "Expired" in repr(m.blocks) and ActionId.APPROVE not in repr(m.blocks)
        )
    clock.advance(60 * 60)
    assert await timed.runtime.keeper.run_due() == []  # nothing fires twice
    kinds = await audit_kinds(timed, "acme-support", req["id"])
    assert kinds.count("request.escalated") == 2 and kinds.count("request.expired") == 1
    metric = timed.runtime.metrics.registry.get_sample_value
    assert metric("countersign_escalations_total", {"tenant": "acme-support"}) == 2
    assert metric("countersign_timeouts_total", {"tenant": "acme-support", "outcome": "rejected"}) == 1
    assert metric("countersign_sla_breaches_total", {"tenant": "acme-support", "pool": "support_tier_1"}) == 1


async def test_on_timeout_approve(timed: Stack, clock: FrozenClock) -> None:
    _, req = await timed.agent().ask("send_goodwill_credit", {"amount": 40, "customer": {"tier": "standard"}})
    assert req["mode"] == "async"
    clock.advance(30 * 60)
    await timed.runtime.keeper.run_due()
    _, done = await timed.agent().call("GET", f"/v1/requests/{req['id']}")
    assert (done["status"], done["decision"]["outcome"]) == ("expired", "approved")


async def test_escalation_widens_and_earlier_votes_still_count(timed: Stack, clock: FrozenClock) -> None:
    _, req = await timed.agent().ask("close_account", {"customer_id": 7})  # 2 approvals: tier 2, then seniors
    await timed.slack.click(DEV, channel=TIER2, action_id=ActionId.APPROVE)
    await timed.slack.wait_for_message(TIER2, predicate=lambda m: "Approvals *1 of 2*" in repr(m.blocks))
    clock.advance(10 * 60)
    await timed.runtime.keeper.run_due()
    await timed.slack.wait_for_message(SENIOR, action_id=ActionId.APPROVE)
    await timed.slack.click(FAY, channel=SENIOR, action_id=ActionId.APPROVE)  # the senior's vote joins Dev's
    _, done = await timed.agent().call("GET", f"/v1/requests/{req['id']}", wait=5)
    assert done["status"] == "approved"
    assert sorted(v["user"] for v in done["votes"]) == [DEV, FAY]


async def test_earlier_pool_can_still_decide_after_escalation(timed: Stack, clock: FrozenClock) -> None:
    _, req = await timed.agent().ask("process_refund", REFUND)
    clock.advance(5 * 60)
    await timed.runtime.keeper.run_due()
    await timed.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)
    await timed.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)  # tier 1's card stays actionable
    _, done = await timed.agent().call("GET", f"/v1/requests/{req['id']}", wait=5)
    assert (done["status"], done["decision"]["by"]) == ("approved", BEN)


async def test_reminder_once_before_the_deadline_and_never_after_a_decision(timed: Stack, clock: FrozenClock) -> None:
    await timed.agent().ask("process_refund", REFUND)
    card = await timed.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    clock.advance(2 * 60)
    await timed.runtime.keeper.run_due()
    assert timed.slack.thread(TIER1, card.ts) == []  # 50 % of 5 minutes is 2.5 minutes
    clock.advance(60)
    await timed.runtime.keeper.run_due()
    reminder = await timed.slack.wait_until(
        lambda: next((m for m in timed.slack.thread(TIER1, card.ts) if "Reminder" in m.text), None), what="a reminder"
    )
    assert all(f"<@{u}>" in reminder.text for u in (ADA, BEN, "U0CHLOE"))
    await timed.runtime.keeper.run_due()
    assert sum("Reminder" in m.text for m in timed.slack.thread(TIER1, card.ts)) == 1
    # A decided request is never reminded about: the next stage's reminder does not come either.
    _, req2 = await timed.agent().ask("process_refund", {**REFUND, "order_id": "A-10"})
    await timed.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="A-10")
    await timed.agent().call("GET", f"/v1/requests/{req2['id']}", wait=5)
    clock.advance(10 * 60)
    await timed.runtime.keeper.run_due()
    assert "request.reminded" not in await audit_kinds(timed, "acme-support", req2["id"])


async def test_a_click_racing_the_last_deadline_yields_one_decision(timed: Stack, clock: FrozenClock) -> None:
    ids = []
    for n in range(4):
        _, req = await timed.agent().ask("process_refund", {**REFUND, "order_id": f"R-{n}"})
        ids.append(req["id"])
    for _ in range(2):  # walk every request to its last stage (seniors)
        clock.advance(5 * 60)
        await timed.runtime.keeper.run_due()
    for n in range(4):
        await timed.slack.wait_for_message(SENIOR, text=f"R-{n}", action_id=ActionId.APPROVE)
    clock.advance(5 * 60)
    clicks = [timed.slack.click(FAY, channel=SENIOR, action_id=ActionId.APPROVE, text=f"R-{n}") for n in range(4)]
    await asyncio.gather(timed.runtime.keeper.run_due(), *clicks)
    for n, request_id in enumerate(ids):
        kinds = await audit_until(timed, request_id, lambda k: "vote.cast" in k or "click.refused" in k)
        _, done = await timed.agent().call("GET", f"/v1/requests/{request_id}")
        assert kinds.count("request.expired") + kinds.count("request.decided") == 1, kinds
        if done["status"] == "approved":  # the click won: it counted and the deadline found nothing to do
            assert done["decision"]["by"] == FAY and "click.refused" not in kinds
        else:  # the deadline won: the click was refused, and told so
            assert (done["status"], done["decision"]["outcome"]) == ("expired", "rejected")
            assert "click.refused" in kinds
        card = await timed.slack.wait_for_message(
            SENIOR, text=f"R-{n}", predicate=lambda m: ActionId.APPROVE not in repr(m.blocks)
        )
        assert ("Approved" if done["status"] == "approved" else "Expired") in repr(card.blocks)


async def test_away_members_are_skipped_at_intake_and_at_escalation(timed: Stack, clock: FrozenClock) -> None:
    now = timed.runtime.clock.now()
    async with uow(timed.runtime.sessionmaker) as tx:
        await tx.pools.set_away("acme-support", "support_tier_1", [ADA, BEN, "U0CHLOE"], True, now=now, actor=ADA)
        await tx.pools.set_away("acme-support", "support_tier_2", [ERIN], True, now=now, actor=ADA)
    _, req = await timed.agent().ask("process_refund", REFUND)
    assert req["pool"] == "support_tier_2"  # everyone in tier 1 is away
    _, two = await timed.agent().ask("close_account", {"customer_id": 8})
    assert two["pool"] == "senior_support"  # tier 2 has one present member for two approvals


async def test_pending_deadlines_fire_after_a_restart(db_url: str, clock: FrozenClock) -> None:
    async with started(db_url, clock) as first:
        _, req = await first.agent().ask("process_refund", REFUND)
        await first.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    clock.advance(6 * 60)  # the deadline passes while the service is down
    async with started(db_url, clock) as second:
        card = await second.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)  # fired at start, no call needed
        assert "A-9" in repr(card.blocks)
        kinds = await audit_kinds(second, "acme-support", req["id"])
        assert kinds.count("request.escalated") == 1


FAST = """
tenant: fast
pools:
  first: {channel: C0FIRST, members: [U0ONE]}
  second: {channel: C0SECOND, members: [U0TWO]}
actions:
  deploy: {reviewer_pool: first, fallback: second, timeout: 2s}
"""


async def test_a_two_second_timeout_brings_the_fallback_card(tmp_path: Path, clock: FrozenClock) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "fast.yaml").write_text(FAST)
    url = f"sqlite+aiosqlite:///{tmp_path / 'fast.db'}"
    async with started(url, clock, tmp_path / "manifests", real_clock=True) as stack:
        _, req = await stack.agent("fast").ask("deploy", {"version": "1.2.3"})
        assert req["pool"] == "first"
        await stack.slack.wait_for_message("C0FIRST", action_id=ActionId.APPROVE)
        card = await stack.slack.wait_for_message("C0SECOND", action_id=ActionId.APPROVE, timeout=10)
        assert "<@U0TWO>" in repr(card.blocks)


async def test_escalation_puts_the_request_on_the_new_pools_home(timed: Stack, clock: FrozenClock) -> None:
    await timed.slack.open_home(DEV)  # once, earlier: only Homes ever opened are kept fresh
    await timed.slack.wait_for_home(DEV, text="Nothing waits for your vote")
    await timed.agent().ask("process_refund", {**REFUND, "order_id": "H-1"})
    await timed.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    clock.advance(5 * 60)
    await timed.runtime.keeper.run_due()
    home = await timed.slack.wait_for_home(DEV, text="H-1")  # republished without Dev opening the tab again
    assert ActionId.APPROVE in repr(home.data["blocks"])
