"""Slack's errors sorted: what no retry fixes is given up on at once (a card moves on and the admins hear
of it, a deleted card is skipped), a 429 is waited out once and counted once, and posts to one channel
are paced without holding other channels' posts."""

from __future__ import annotations

import time

from bot.ids import ActionId
from bot.outbox.pacing import Pacer
from bot.sandbox.testing import message_text
from bot.service.effects import Effect
from store.outbox import ItemState, OutboxEntry
from store.uow import uow
from tests.e2e.conftest import FAST_RETRY, TIER1, Stack, eventually
from tests.hardening.conftest import SWARM, SWARM_FALLBACK, SWARM_MEMBERS, outbox_states
from tests.hardening.test_slack_faults import admin_dm


async def _metric(stack: Stack, line_start: str) -> float:
    async with stack.http.get(stack.url + "/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def test_a_note_slack_will_never_take_is_given_up_at_once_not_retried_for_a_day(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    status, body = await stack.agent("swarm").ask("three_votes", {"n": 1})
    assert status == 202
    await stack.slack.wait_for_message(SWARM, text=body["id"])
    stack.slack.fail_next("chat.postMessage", error="msg_too_long")  # the vote's thread note
    await stack.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)

    async def given_up() -> bool | None:
        return (await outbox_states(stack, "swarm"))["failed"] == 1 or None

    await eventually(given_up, what="the note given up on")
    await stack.slack.wait_for_message(SWARM, predicate=lambda m: "1 of 3" in repr(m.blocks))  # the card moved on
    refused = [c for c in stack.slack.calls("chat.postMessage") if c.response.get("error") == "msg_too_long"]
    assert len(refused) == 1  # one try: FAST_RETRY would have tried again within 200 ms


async def test_a_deleted_card_is_skipped_and_the_decisions_other_effects_go_out(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 1})
    assert status == 202
    card = await stack.slack.wait_for_message(SWARM, text=body["id"])
    stack.slack.fail_next("chat.update", error="message_not_found")  # somebody deleted the card
    await stack.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)
    notes = await stack.slack.wait_until(
        lambda: [message_text(m) for m in stack.slack.thread(SWARM, card.ts)][1:] or None, what="the thread notes"
    )
    assert any("Approved" in n for n in notes)
    await eventually(lambda: _drained(stack), what="an empty outbox, nothing failed")
    assert [c.response.get("error") for c in stack.slack.calls("chat.update")] == ["message_not_found"]


async def _drained(stack: Stack) -> bool | None:
    return await outbox_states(stack, "swarm") == {"pending": 0, "leased": 0, "failed": 0} or None


async def test_a_card_slack_refuses_moves_to_the_next_pool_and_the_admins_hear_why(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    stack.slack.fail_next("chat.postMessage", error="invalid_blocks")
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 2})
    assert status == 202
    await stack.slack.wait_for_message(SWARM_FALLBACK, text=body["id"], timeout=5)
    dm = await admin_dm(stack, body["id"])
    assert "invalid_blocks" in dm and "It moved to the next pool." in dm
    assert [c.response.get("error") for c in stack.slack.calls("chat.postMessage")].count("invalid_blocks") == 1


async def test_a_429_is_waited_out_once_and_counted_once(stack: Stack) -> None:
    before = await _metric(stack, 'countersign_slack_ratelimit_waits_total{method="chat.postMessage"}')
    stack.slack.fail_next("chat.postMessage", error="ratelimited", retry_after=1)
    started = time.monotonic()
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 3})
    assert status == 202
    await stack.slack.wait_for_message(SWARM, text=body["id"], timeout=5)
    assert time.monotonic() - started >= 0.9  # Slack's Retry-After, kept
    statuses = await stack.slack.wait_until(
        lambda: [c.status for c in stack.slack.calls("chat.postMessage")][1:] and stack.slack.calls("chat.postMessage"),
        what="the retried post on record",
    )
    assert [c.status for c in statuses] == [429, 200]

    # Rescheduled by the worker (its lease let go meanwhile), not slept on inside the Slack client.
    async def posted() -> OutboxEntry | None:
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            done = await tx.outbox.inspect(now=stack.runtime.clock.now(), tenant="swarm", states=[ItemState.DONE])
        return next((e for e in done if e.kind == Effect.POST_CARD), None)

    card = await eventually(posted, what="the card's item acknowledged")
    # A 429 did nothing in Slack: not counted as an attempt, so the retry posts without a look-up first.
    assert card.attempts == 1 and stack.slack.calls("conversations.history") == []
    after = await _metric(stack, 'countersign_slack_ratelimit_waits_total{method="chat.postMessage"}')
    assert after - before == 1


async def test_posts_to_one_channel_are_paced_and_other_channels_do_not_wait(stack: Stack) -> None:
    stack.runtime.slack.pacer = Pacer(2)  # posts a second per channel (Slack's is about 1)
    swarm = stack.agent("swarm")
    started = time.monotonic()
    ids = [(await swarm.ask("one_vote", {"n": 10 + n}))[1]["id"] for n in range(6)]
    # Another channel's card, asked while the swarm's are being spaced out, does not queue behind them.
    asked = time.monotonic()
    _, refund = await stack.agent().ask("process_refund", {"amount": 900, "currency": "EUR", "order_id": "P-1"})
    await stack.slack.wait_for_message(TIER1, text=refund["id"], timeout=10)
    other_channel = time.monotonic() - asked
    for request_id in ids:
        await stack.slack.wait_for_message(SWARM, text=request_id, timeout=10)
    # One every half second: the sixth card two and a half seconds after the first (unpaced, all six take
    # a small fraction of that).
    assert time.monotonic() - started >= 2.0
    assert other_channel < 1.0
    # Paced on our side, not refused by Slack. The emulator logs a call once it has answered it, a moment after
    # the message appears: wait for the log rather than read it at once.
    await stack.slack.wait_until(lambda: len(stack.slack.calls("chat.postMessage")) >= 7, what="the seventh post")
    assert len(stack.slack.calls("chat.postMessage")) == 7
