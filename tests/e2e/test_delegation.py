"""``/hitl delegate``: while you are away your delegate votes for you, until ``off`` or the ``until`` day ends.

The whole service against the Slack emulator, SQLite and PostgreSQL, on a frozen clock (the ``until``
day passes by moving the clock, not by waiting).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FrozenClock
from bot.ids import ActionId
from bot.sandbox.workspace import User
from store.uow import uow
from tests.deadlines.conftest import started
from tests.e2e.conftest import (
    ADA,
    BEN,
    CHLOE,
    DEV,
    ERIN,
    OUTSIDER,
    SOLO,
    TIER1,
    TIER2,
    Stack,
    eventually,
    refund,
)
from tests.hitl.helpers import hitl
from tests.hitl.test_home import home_of

HELPER_BOT = "U0HELPERBOT"
R01 = "U0R01"


@pytest.fixture
def clock() -> FrozenClock:
    # Mid-morning UTC: the "until" day still has hours to run.
    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    return FrozenClock(today)


@pytest.fixture
async def timed(db_url: str, clock: FrozenClock, manifests: Path) -> AsyncIterator[Stack]:
    async with started(db_url, clock, manifests) as stack:
        yield stack


async def _status(stack: Stack, tenant: str, request_id: str) -> str:
    _, body = await stack.agent(tenant).call("GET", f"/v1/requests/{request_id}")
    return str(body["status"])


async def _decided(stack: Stack, tenant: str, request_id: str) -> dict[str, object]:
    async def probe() -> dict[str, object] | None:
        _, body = await stack.agent(tenant).call("GET", f"/v1/requests/{request_id}")
        return body if body["status"] != "pending" else None

    found: dict[str, object] = await eventually(probe, what=f"{request_id} decided")
    return found


async def _refund_card(stack: Stack, order: str, **extra: object) -> str:
    _, body = await stack.agent().ask("process_refund", refund(order), **extra)
    assert body["status"] == "pending", body
    await stack.slack.wait_for_message(TIER1, text=order, action_id=ActionId.APPROVE)
    return str(body["id"])


async def test_a_delegate_approves_while_the_delegator_is_away_and_not_after_off(
    timed: Stack, clock: FrozenClock
) -> None:
    stack = timed
    said = await hitl(stack, CHLOE, f"delegate <@{OUTSIDER}|olive>")
    clock.advance(60)
    during = clock.now()
    clock.advance(60)
    assert "votes for you in `support_tier_1`" in said and "until `/hitl delegate off`" in said

    # /hitl pools shows it: Chloe away, Olive standing in, and the delegation in force.
    pools = await hitl(stack, ADA, "pools")
    assert f"<@{OUTSIDER}> for <@{CHLOE}>" in pools
    assert f"<@{OUTSIDER}> votes for <@{CHLOE}>" in pools
    assert f"away: <@{CHLOE}>" in pools

    # The card lists Olive among who can approve, and so do her App Home, /hitl pending and whocan.
    first = await _refund_card(stack, "D-1")
    card = stack.slack.find_message(TIER1, text="D-1")
    assert card is not None and f"<@{OUTSIDER}>" in repr(card.blocks)
    await stack.slack.open_home(OUTSIDER)
    await home_of(stack, OUTSIDER, has=first)
    assert first in await hitl(stack, OUTSIDER, "pending")
    assert f"<@{OUTSIDER}>" in await hitl(stack, ADA, "whocan process_refund amount=620")
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    done = await _decided(stack, "acme-support", first)
    assert done["status"] == "approved"
    votes: list[dict[str, object]] = done["votes"]  # type: ignore[assignment]
    assert [(v["user"], v["for_user"]) for v in votes] == [(OUTSIDER, CHLOE)]
    # Shown as "Olive (for Chloe)" on the card and in its thread.
    await stack.slack.wait_for_message(
        TIER1, predicate=lambda m: m.ts == card.ts and f"<@{OUTSIDER}> (for <@{CHLOE}>)" in repr(m.blocks)
    )
    await stack.slack.wait_for_message(TIER1, text=f"<@{OUTSIDER}> (for <@{CHLOE}>) approved")
    # The decision's own note in the card's thread says so too.
    await stack.slack.wait_until(
        lambda: [m for m in stack.slack.thread(TIER1, card.ts) if m.text.startswith(":white_check_mark: *Approved*")],
        what="the decision's note",
    )
    [decided_note] = [
        m for m in stack.slack.thread(TIER1, card.ts) if m.text.startswith(":white_check_mark: *Approved*")
    ]
    assert f"*Approved* by <@{OUTSIDER}> (for <@{CHLOE}>)" in decided_note.text, decided_note.text
    cast = [r for r in await stack.audit("acme-support", first) if r.kind == "vote.cast"]
    assert [(r.actor, r.payload.get("for")) for r in cast] == [(OUTSIDER, CHLOE)]

    # Off: Olive's click no longer counts; Chloe is back.
    said = await hitl(stack, CHLOE, "delegate off")
    assert f"<@{OUTSIDER}> no longer votes for you" in said
    assert "Delegations in force" not in await hitl(stack, ADA, "pools")
    second = await _refund_card(stack, "D-2")
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")
    assert await _status(stack, "acme-support", second) == "pending"
    assert "nothing to show you" in await hitl(stack, OUTSIDER, "pending")  # no longer in the tenant

    # The pool as it was while the delegation was in force, replayed from the history.
    then = await hitl(stack, ADA, f"pool show support_tier_1 at {during:%Y-%m-%dT%H:%M:%SZ}")
    assert f"standing in: <@{OUTSIDER}> for <@{CHLOE}>" in then
    assert "standing in" not in await hitl(stack, ADA, "pool show support_tier_1")

    # Both changes are versioned and in /hitl history.
    history = await hitl(stack, ADA, "history")
    assert f"handed <@{CHLOE}>'s vote to <@{OUTSIDER}>" in history
    assert f"ended <@{CHLOE}>'s delegation to <@{OUTSIDER}>" in history


async def test_a_delegation_ends_with_its_until_day(timed: Stack, clock: FrozenClock) -> None:
    stack = timed
    today = clock.now().date()
    said = await hitl(stack, CHLOE, f"delegate <@{OUTSIDER}> until {today.isoformat()}")
    assert f"until the end of {today.isoformat()} (UTC)" in said

    # A minute before midnight UTC it is still in force.
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    clock.advance((midnight - clock.now()).total_seconds() - 60)
    first = await _refund_card(stack, "U-1")
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    assert (await _decided(stack, "acme-support", first))["status"] == "approved"

    # Past midnight it is over, with nothing run at midnight: Olive's click is refused, Chloe votes again.
    clock.advance(120)
    assert "Delegations in force" not in await hitl(stack, ADA, "pools")
    second = await _refund_card(stack, "U-2")
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")
    assert await _status(stack, "acme-support", second) == "pending"
    await stack.slack.click(CHLOE, channel=TIER1, action_id=ActionId.APPROVE)
    assert (await _decided(stack, "acme-support", second))["status"] == "approved"


async def test_a_delegate_and_their_delegator_count_as_one_approval(timed: Stack) -> None:
    stack = timed
    # close_account needs two of tier 2 (Dev, Erin); Erin hands her vote to Ben (tier 1 only).
    await hitl(stack, ERIN, f"delegate <@{BEN}>")
    _, body = await stack.agent().ask("close_account", {"customer": "C-1"})
    assert (body["status"], body["pool"]) == ("pending", "support_tier_2"), body
    await stack.slack.wait_for_message(TIER2, action_id=ActionId.APPROVE)

    await stack.slack.click(BEN, channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_message(TIER2, text=f"<@{BEN}> (for <@{ERIN}>) approved (1 of 2)")
    # Erin (away, but away members may vote) cannot add a second approval to her delegate's.
    await stack.slack.click(ERIN, channel=TIER2, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(ERIN, text="each person counts once")
    assert await _status(stack, "acme-support", body["id"]) == "pending"
    await stack.slack.click(DEV, channel=TIER2, action_id=ActionId.APPROVE)
    assert (await _decided(stack, "acme-support", body["id"]))["status"] == "approved"

    # With Dev away too, tier 2 has one person for two approvals: it is skipped, as the quorum check says.
    await hitl(stack, DEV, "pool away support_tier_2")
    _, skipped = await stack.agent().ask("close_account", {"customer": "C-2"})
    assert skipped["pool"] == "senior_support", skipped


async def test_a_pool_of_one_away_member_serves_through_the_delegate_but_not_for_either_of_them(
    timed: Stack,
) -> None:
    stack = timed
    lab = stack.agent("lab")
    await hitl(stack, SOLO, "pool away solo")
    _, alone = await lab.ask("solo_change", {"what": "a"})
    assert alone["status"] == "rejected", alone  # every member away: nobody to count on, fails closed

    await hitl(stack, SOLO, f"delegate <@{R01}>")
    assert "cannot take requests" not in await hitl(stack, SOLO, "pool show solo")
    _, served = await lab.ask("solo_change", {"what": "b"})
    assert served["status"] == "pending", served
    # Never for a request on the delegate's behalf, nor (acting for Solo) on Solo's.
    for person in (R01, SOLO):
        _, refused = await lab.ask("solo_change", {"what": "c"}, context={"on_behalf_of": person})
        assert refused["status"] == "rejected", (person, refused)
    whocan = await hitl(stack, SOLO, "whocan solo_change")
    assert f"<@{R01}>" in whocan


async def test_refused_delegations_say_why_and_are_audited(timed: Stack) -> None:
    stack = timed
    stack.emulator.workspace.users[HELPER_BOT] = User(id=HELPER_BOT, name="helper", real_name="Helper", is_bot=True)

    assert "cannot delegate to yourself" in await hitl(stack, BEN, f"delegate <@{BEN}>")
    assert "that is a bot" in await hitl(stack, BEN, f"delegate <@{HELPER_BOT}>")
    assert "not in this workspace" in await hitl(stack, BEN, "delegate <@U0NOBODY>")
    assert "already passed" in await hitl(stack, BEN, f"delegate <@{DEV}> until 2001-01-01")
    assert "is not a person" in await hitl(stack, BEN, "delegate everyone")

    # Chains: Chloe -> Ben stands; Ben cannot hand it on, and nobody can delegate to Chloe.
    assert "votes for you" in await hitl(stack, CHLOE, f"delegate <@{BEN}>")
    said = await hitl(stack, BEN, f"delegate <@{DEV}>")
    assert f"<@{CHLOE}> delegated to you" in said and "do not chain" in said
    said = await hitl(stack, ADA, f"delegate <@{CHLOE}>")
    assert f"<@{CHLOE}> is away too and has delegated to <@{BEN}>" in said

    async def refusals() -> list[str] | None:
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            found = [r for r in await tx.audit.recent("acme-support") if r.kind == "delegation.refused"]
        return [str(r.actor) for r in found] if len(found) >= 6 else None

    actors = await eventually(refusals, what="the refusals audited")
    assert sorted(actors) == sorted([BEN, BEN, BEN, BEN, BEN, ADA])  # a typo (no one named) is not a refusal
