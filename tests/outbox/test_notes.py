"""Thread notes and DMs are posted once: a retry reads the thread (or the DM) back for what an earlier
attempt left in Slack. The worker and the note delivery run against the emulator and a real database;
the clock is moved past each backoff, never slept through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from bot.outbox.loop import OutboxWorker
from bot.outbox.notes import NoteDelivery
from bot.outbox.slackcalls import SlackCalls
from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, message_text, running_emulator, small_seed
from bot.service.effects import DirectMessage, Effect, Thread
from store.uow import uow
from tests.outbox.conftest import TENANT, states, worker
from tests.store.helpers import pending_request

REVIEWS, QUIET = "C0REVIEWS", "C0QUIET"
NOTE = "Approved by <@U0ADA>."


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(
        EmulatorConfig(), small_seed(), clock=ManualClock(), ids=Ids(deterministic=True)
    ) as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> AsyncWebClient:
    # A 1 s timeout, so a call the emulator answers 1.5 s late times out on our side but takes effect in Slack.
    return AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url, timeout=1)


@pytest.fixture
def notes(sm: async_sessionmaker[AsyncSession], clock: FrozenClock, client: AsyncWebClient) -> OutboxWorker:
    return worker(sm, clock, NoteDelivery(sessionmaker=sm, slack=SlackCalls(client)))


async def cards(sm: async_sessionmaker[AsyncSession], client: AsyncWebClient, *channels: str) -> list[str]:
    """A request with a card in each of ``channels`` (posted to the emulator, recorded in the database)."""
    request_id = await pending_request(sm, TENANT, FrozenClock().now())
    posted = []
    for stage, channel in enumerate(channels):
        ts = str((await client.chat_postMessage(channel=channel, text=f"card {stage}"))["ts"])
        async with uow(sm) as tx:
            await tx.cards.add_card(request_id, stage=stage, channel=channel, ts=ts, now=FrozenClock().now())
        posted.append(ts)
    return posted


async def queue(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock, kind: Effect, payload: Thread | DirectMessage
) -> None:
    async with uow(sm) as tx:
        await tx.outbox.enqueue(TENANT, kind.value, {**payload.model_dump(), "n": 1}, now=clock.now())


def thread_notes(slack: SlackDriver, channel: str, ts: str) -> list[str]:
    return [message_text(m) for m in slack.thread(channel, ts) if m.ts != ts]


async def drain(notes: OutboxWorker, clock: FrozenClock, sm: async_sessionmaker[AsyncSession]) -> None:
    """Deliver until done, moving the clock past each backoff."""
    for _ in range(5):
        await notes.drain_once()
        if all(state == "done" for state, _ in (await states(sm, clock)).values()):
            return
        clock.advance(1)
    raise AssertionError(f"not delivered: {await states(sm, clock)}")


async def test_a_thread_note_whose_post_timed_out_is_found_not_posted_again(
    emulator: Emulator,
    client: AsyncWebClient,
    notes: OutboxWorker,
    sm: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    [card] = await cards(sm, client, REVIEWS)
    slack = SlackDriver(emulator)
    slack.fail_next("chat.postMessage", error=None, delay=1.5)  # reaches the thread; the answer comes too late
    await queue(sm, clock, Effect.THREAD, Thread(request_id="req-1", text=NOTE))
    await drain(notes, clock, sm)
    assert thread_notes(slack, REVIEWS, card) == [NOTE]
    assert await states(sm, clock) == {1: ("done", 2)}
    assert [c.response["ok"] for c in slack.calls("conversations.replies")] == [True]


async def test_a_note_that_reached_one_thread_before_the_next_failed_is_not_repeated(
    emulator: Emulator,
    client: AsyncWebClient,
    notes: OutboxWorker,
    sm: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    first, second = await cards(sm, client, REVIEWS, QUIET)
    slack = SlackDriver(emulator)
    quiet = emulator.workspace.channels[QUIET]
    quiet.is_archived = True  # the second card's thread refuses the note once
    await queue(sm, clock, Effect.THREAD, Thread(request_id="req-1", text=NOTE))
    await notes.drain_once()
    assert thread_notes(slack, REVIEWS, first) == [NOTE] and thread_notes(slack, QUIET, second) == []
    quiet.is_archived = False
    clock.advance(1)
    await drain(notes, clock, sm)
    assert thread_notes(slack, REVIEWS, first) == [NOTE]
    assert thread_notes(slack, QUIET, second) == [NOTE]


async def test_a_first_attempt_posts_without_looking(
    emulator: Emulator,
    client: AsyncWebClient,
    notes: OutboxWorker,
    sm: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    [card] = await cards(sm, client, REVIEWS)
    slack = SlackDriver(emulator)
    await queue(sm, clock, Effect.THREAD, Thread(request_id="req-1", text=NOTE))
    await queue(sm, clock, Effect.DM, DirectMessage(user="U0ADA", text="A request failed closed."))
    await drain(notes, clock, sm)
    assert thread_notes(slack, REVIEWS, card) == [NOTE]
    assert slack.calls("conversations.replies") == slack.calls("conversations.open") == []


async def test_a_dm_whose_post_timed_out_is_found_not_posted_again(
    emulator: Emulator, notes: OutboxWorker, sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    slack = SlackDriver(emulator)
    slack.fail_next("chat.postMessage", error=None, delay=1.5)
    await queue(sm, clock, Effect.DM, DirectMessage(user="U0ADA", text="A request failed closed."))
    await drain(notes, clock, sm)
    assert [message_text(m) for m in slack.messages("U0ADA")] == ["A request failed closed."]
    assert [c.response["ok"] for c in slack.calls("conversations.open")] == [True]
    assert slack.calls("conversations.history")


async def test_without_the_dm_scopes_a_timed_out_dm_is_still_posted(
    emulator: Emulator, notes: OutboxWorker, sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    """An install that predates the look-up (no im:write, im:history) posts the DM again, as it used to."""
    emulator.config.scopes = tuple(s for s in emulator.config.scopes if not s.startswith("im:"))
    slack = SlackDriver(emulator)
    slack.fail_next("chat.postMessage", error=None, delay=1.5)
    await queue(sm, clock, Effect.DM, DirectMessage(user="U0ADA", text="A request failed closed."))
    await drain(notes, clock, sm)
    assert len(slack.messages("U0ADA")) == 2
    assert [c.response.get("error") for c in slack.calls("conversations.open")] == ["missing_scope"]
