"""Slack's errors sorted: what no retry fixes is given up on at once (a card moves on and the admins hear
of it), a 429 is waited out once and counted once, and posts to one channel are paced."""

from __future__ import annotations

import time

from bot.ids import ActionId
from bot.sandbox.testing import message_text
from bot.service.effects import Effect
from store.outbox import ItemState, OutboxEntry
from store.uow import uow
from tests.e2e.conftest import FAST_RETRY, Stack, eventually
from tests.hardening.conftest import SWARM, SWARM_FALLBACK, SWARM_MEMBERS, outbox_states
from tests.hardening.test_slack_faults import admin_dm


async def _metric(stack: Stack, line_start: str) -> float:
    async with stack.http.get(stack.url + "/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def test_an_update_slack_will_never_take_is_given_up_at_once_not_retried_for_a_day(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 1})
    assert status == 202
    await stack.slack.wait_for_message(SWARM, text=body["id"])
    stack.slack.fail_next("chat.update", error="message_not_found")  # somebody deleted the card
    await stack.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)

    async def given_up() -> bool | None:
        return (await outbox_states(stack, "swarm"))["failed"] == 1 or None

    await eventually(given_up, what="the update given up on")
    refused = [c for c in stack.slack.calls("chat.update") if c.response.get("error") == "message_not_found"]
    assert len(refused) == 1  # one try: FAST_RETRY would have tried again within 200 ms
    notes = await stack.slack.wait_until(
        lambda: [message_text(m) for m in stack.slack.thread(SWARM, refused[0].args["ts"])][1:] or None,
        what="the thread notes",
    )
    assert any("Approved" in n for n in notes)  # the rest of the decision's effects went out


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
    assert [c.status for c in stack.slack.calls("chat.postMessage")] == [429, 200]

    # Rescheduled by the worker (its lease let go meanwhile), not slept on inside the Slack client.
    async def posted() -> OutboxEntry | None:
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            done = await tx.outbox.inspect(now=stack.runtime.clock.now(), tenant="swarm", states=[ItemState.DONE])
        return next((e for e in done if e.kind == Effect.POST_CARD), None)

    card = await eventually(posted, what="the card's item acknowledged")
    assert card.attempts == 2
    after = await _metric(stack, 'countersign_slack_ratelimit_waits_total{method="chat.postMessage"}')
    assert after - before == 1


async def test_posts_to_one_channel_are_paced(stack: Stack) -> None:
    stack.runtime.slack.channel_rate = 2  # posts a second per channel (Slack's is about 1)
    agent = stack.agent("swarm")
    started = time.monotonic()
    ids = [(await agent.ask("one_vote", {"n": 10 + n}))[1]["id"] for n in range(6)]
    for request_id in ids:
        await stack.slack.wait_for_message(SWARM, text=request_id, timeout=10)
    # Two at once, then one each half second: the sixth card two seconds after the first (unpaced, all six
    # take a small fraction of that).
    assert time.monotonic() - started >= 1.8
    assert len(stack.slack.calls("chat.postMessage")) == 6  # paced, not refused and retried
