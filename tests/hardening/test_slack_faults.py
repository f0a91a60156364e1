"""Slack on a bad day and agents that are down: nothing is lost, and what is given up on is visible.

Cards go out through the outbox; chat.postMessage answering 429, 500 or timing out for a while only
delays them, and a card whose post timed out on our side but reached Slack is found, not posted again.
An agent's callback endpoint that stays down is retried and, past the outbox's expiry
(24 h, reached here by moving an injected clock), marked failed: ``/hitl show`` and ``/metrics`` say so.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.clock import FrozenClock
from bot.ids import ActionId
from bot.sandbox.testing import message_text
from store.uow import uow
from tests.deadlines.conftest import started
from tests.e2e.conftest import FAST_RETRY, Stack, eventually
from tests.hardening.conftest import SWARM, SWARM_ADMIN, SWARM_FALLBACK, SWARM_MEMBERS, outbox_states
from tests.outbox.outage import outage
from tests.serviceproc import free_port

CARD_ID = re.compile(r"Request `([0-9a-f]+)`")


def _cards(stack: Stack, channel: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for m in stack.slack.messages(channel):
        if match := CARD_ID.search(message_text(m)):
            found[match.group(1)] = found.get(match.group(1), 0) + 1
    return found


async def _burst(stack: Stack, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, body = await stack.agent("swarm").ask("one_vote", {"i": i})
        assert status == 202, body
        ids.append(body["id"])
    return ids


@pytest.mark.parametrize(
    "fault",
    [
        {"error": "ratelimited", "times": 6},  # HTTP 429 with Retry-After: 1
        {"error": "internal_error", "status": 500, "times": 6},
        {"error": "service_unavailable", "status": 503, "times": 6},
        {"error": "fatal_error", "times": 6},  # HTTP 200 {"ok": false}
    ],
    ids=["429", "500", "503", "fatal_error"],
)
async def test_post_message_failing_for_a_while_loses_no_card(stack: Stack, fault: dict[str, object]) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    stack.slack.fail_next("chat.postMessage", **fault)  # type: ignore[arg-type]
    ids = await _burst(stack, 5)
    await stack.slack.wait_until(lambda: set(ids) <= set(_cards(stack, SWARM)), what="every card", timeout=20)
    assert all(count == 1 for count in _cards(stack, SWARM).values())
    failed = [c for c in stack.slack.calls("chat.postMessage") if c.response.get("ok") is False]
    assert len(failed) >= 6  # the faults really happened
    await eventually(lambda: _drained(stack), what="an empty outbox")


async def _drained(stack: Stack) -> bool:
    return await outbox_states(stack, "swarm") == {"pending": 0, "leased": 0, "failed": 0}


@contextlib.asynccontextmanager
async def slack_timeout(stack: Stack, seconds: float) -> AsyncIterator[None]:
    """The Web API client's timeout, so a test waits 1 s, not 30: its HTTP session's, as Runtime.build sets it
    (slack_sdk applies its own ``timeout`` only to sessions it opens)."""
    clients = (stack.runtime.bolt.client, stack.runtime.slack.client)  # Bolt's listeners', the outbox's
    shared = [client.session for client in clients]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
        for client in clients:
            client.session = session
        try:
            yield
        finally:
            for client, own in zip(clients, shared, strict=True):
                client.session = own


async def _timeouts(stack: Stack) -> dict[str, int]:
    """Three chat.postMessage calls outlast the client's timeout (Slack still posts them); all cards show."""
    stack.runtime.worker.retry = FAST_RETRY
    async with slack_timeout(stack, 1):
        stack.slack.fail_next("chat.postMessage", error=None, delay=1.5, times=3)
        ids = await _burst(stack, 3)
        await stack.slack.wait_until(lambda: set(ids) <= set(_cards(stack, SWARM)), what="every card", timeout=20)
        await eventually(lambda: _drained(stack), what="an empty outbox")
        return _cards(stack, SWARM)


async def test_post_message_timing_out_for_a_while_loses_no_card(stack: Stack) -> None:
    assert len(await _timeouts(stack)) == 3


async def test_post_message_timing_out_posts_each_card_once(stack: Stack) -> None:
    assert all(n == 1 for n in (await _timeouts(stack)).values())
    assert stack.slack.calls("conversations.history")  # the retries looked for their cards, and found them


async def test_a_card_posted_at_the_first_try_costs_one_call(stack: Stack) -> None:
    ids = await _burst(stack, 3)
    await stack.slack.wait_until(lambda: set(ids) <= set(_cards(stack, SWARM)), what="every card")
    await eventually(lambda: _drained(stack), what="an empty outbox")
    assert len(stack.slack.calls("chat.postMessage")) == 3
    assert stack.slack.calls("conversations.history") == []


async def test_a_thread_note_whose_post_timed_out_is_posted_once(stack: Stack) -> None:
    """A note (the vote's, then the decision's) reached the card's thread but our side timed out: the retry
    finds it there."""
    stack.runtime.worker.retry = FAST_RETRY
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 1})
    assert status == 202
    card = await stack.slack.wait_for_message(SWARM, text=body["id"])
    async with slack_timeout(stack, 1):
        stack.slack.fail_next("chat.postMessage", error=None, delay=1.5)  # the note is the next post
        await stack.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)
        await stack.slack.wait_for_call("conversations.replies", predicate=lambda c: c.response.get("ok") is True)
        await eventually(lambda: _drained(stack), what="an empty outbox")
    notes = [message_text(m) for m in stack.slack.thread(SWARM, card.ts) if m.ts != card.ts]
    assert len(notes) == len(set(notes)) == 2, notes
    assert any("*Approved* by" in note for note in notes)


async def test_the_database_failing_for_a_moment_delays_cards_but_loses_none(stack: Stack) -> None:
    """As when PostgreSQL restarts: the worker's reads and writes fail for a while; it lives on and posts."""
    with outage(stack.runtime.engine) as database:
        database.down = True
        await eventually(lambda: _at_least(database.outbox_refused(), 3), what="the worker trying the database")
        database.down = False
    ids = await _burst(stack, 3)
    await stack.slack.wait_until(lambda: set(ids) <= set(_cards(stack, SWARM)), what="every card")
    assert all(count == 1 for count in _cards(stack, SWARM).values())
    async with stack.http.get(stack.url + "/readyz") as resp:
        assert resp.status == 200 and '"outbox_worker": "ok"' in await resp.text()


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def test_without_the_history_scopes_a_timed_out_card_is_still_posted(stack: Stack) -> None:
    """An install that predates the look-up (no channels:history) posts the card again, as it used to."""
    stack.emulator.config.scopes = tuple(s for s in stack.emulator.config.scopes if not s.endswith(":history"))
    assert len(await _timeouts(stack)) == 3
    looked = stack.slack.calls("conversations.history")
    assert looked and all(c.response.get("error") == "missing_scope" for c in looked)


async def test_channel_not_found_falls_back_to_the_next_stage_and_tells_the_admins(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    gone = stack.emulator.workspace.channels[SWARM]
    gone.is_private, gone.bot_is_member = True, False  # Slack answers channel_not_found from now on
    status, body = await stack.agent("swarm").ask("one_vote", {"n": 1})
    assert status == 202
    await stack.slack.wait_for_call(
        "chat.postMessage", predicate=lambda c: c.response.get("error") == "channel_not_found"
    )
    await stack.slack.wait_for_message(SWARM_FALLBACK, text=body["id"], timeout=5)
    assert "It moved to the next pool." in await admin_dm(stack, body["id"])


async def test_channel_not_found_with_no_pool_left_rejects_and_tells_the_admins(stack: Stack) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    gone = stack.emulator.workspace.channels[SWARM]
    gone.is_private, gone.bot_is_member = True, False
    status, body = await stack.agent("swarm").ask("three_votes", {"n": 1})  # hive is its only pool
    assert status == 202
    status, done = await stack.agent("swarm").call("GET", f"/v1/requests/{body['id']}", wait=10)
    assert (done["status"], done["decision"]["by"]) == ("rejected", "policy")
    assert "cannot be posted to (channel_not_found)" in done["decision"]["reason"]
    assert "It was rejected." in await admin_dm(stack, body["id"])


async def admin_dm(stack: Stack, needle: str) -> str:
    """The text of the DM to the swarm admin that mentions ``needle`` (waits for it)."""

    def probe() -> str | None:
        try:  # the DM conversation exists from the first message on
            return next((t for m in stack.slack.messages(SWARM_ADMIN) if needle in (t := message_text(m))), None)
        except LookupError:
            return None

    return await stack.slack.wait_until(probe, what="a DM to the tenant admin")


# -- agents that are down ----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def frozen(db_url: str, clock: FrozenClock, manifests: Path) -> AsyncIterator[Stack]:
    async with started(db_url, clock, manifests) as stack:
        yield stack


async def _callback_item(stack: Stack, request_id: str) -> tuple[str, int, str | None] | None:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        for entry in await tx.outbox.inspect(now=stack.runtime.clock.now(), tenant="swarm"):
            if entry.dedupe_key == f"callback:{request_id}":
                return entry.state.value, entry.attempts, entry.last_error
    return None


async def test_a_callback_to_an_agent_that_stays_down_is_retried_then_failed_and_visible(
    frozen: Stack, clock: FrozenClock
) -> None:
    down = f"http://127.0.0.1:{free_port()}/countersign"  # nothing listens there
    status, body = await frozen.agent("swarm").ask("async_change", {"n": 1}, callback_url=down)
    assert (status, body["mode"]) == (202, "async")
    await frozen.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)

    async def attempts_at_least(n: int) -> tuple[str, int, str | None] | None:
        item = await _callback_item(frozen, body["id"])
        return item if item and item[1] >= n and item[0] != "leased" else None

    first = await eventually(lambda: attempts_at_least(1), what="a first attempt")
    assert first[0] == "pending" and "Connect" in str(first[2])
    clock.advance(60)  # past the first backoff: tried again
    frozen.runtime.worker.wake()
    await eventually(lambda: attempts_at_least(2), what="a second attempt")
    clock.advance(25 * 3600)  # past the outbox item's 24 h expiry: the next failure gives up
    frozen.runtime.worker.wake()
    state, attempts, error = await eventually(lambda: attempts_at_least(3), what="a third attempt")
    assert state == "failed" and attempts >= 3 and error

    # The request itself stands: approved. The failure is visible to people and to monitoring.
    _, done = await frozen.agent("swarm").call("GET", f"/v1/requests/{body['id']}")
    assert done["status"] == "approved"
    await frozen.slack.command(SWARM_MEMBERS[1], f"/hitl show {body['id']}")
    shown = await frozen.slack.wait_for_ephemeral(SWARM_MEMBERS[1], text="Callback to the agent")
    assert "*failed*" in message_text(shown) and f"after {attempts} attempts" in message_text(shown)
    async with frozen.http.get(frozen.url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'countersign_outbox_failed{kind="callback.deliver"} 1.0' in metrics
    assert not [r for r in await frozen.audit("swarm", body["id"]) if r.kind == "callback.delivered"]
