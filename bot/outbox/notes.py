"""Notes in Slack: a line in the thread of every card of a request, and direct messages.

Each carries message metadata naming its outbox item, so a retry reads the thread (or the DM) back
and skips what an earlier attempt already posted: a note whose answer was lost (a timeout, a crash)
is adopted, not posted twice, and a note that reached one card's thread before the post to the next
card failed is not repeated in the first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.outbox.delivery import RetryAfter, parse
from bot.outbox.slackcalls import Metadata, SlackCalls, metadata
from bot.service.effects import DirectMessage, Effect, Thread
from bot.service.groupcommit import GroupCommit
from store.models import Card, OutboxItem
from store.uow import uow

NOTE_EVENT = "countersign_note"


def note_metadata(item: OutboxItem) -> Metadata:
    return metadata(NOTE_EVENT, {"outbox_item": item.id})


class NoteDelivery:
    """Delivers :data:`Effect.THREAD` and :data:`Effect.DM`."""

    kinds: Collection[str] = frozenset({Effect.THREAD, Effect.DM})

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], slack: SlackCalls) -> None:
        self.sessionmaker = sessionmaker
        self.slack = slack
        # Read when each note is delivered (a card posted a moment ago counts), but the notes being
        # delivered together share one query.
        self._cards: GroupCommit[str, list[Card]] = GroupCommit(self._cards_of)

    async def deliver(self, item: OutboxItem) -> None:
        if item.kind == Effect.THREAD:
            await self._thread(item, parse(Thread, item))
        else:
            await self._dm(item, parse(DirectMessage, item))

    async def _thread(self, item: OutboxItem, payload: Thread) -> None:
        cards = await self._cards.submit(payload.request_id)
        # Its turn in every card's channel before the first post: a note half posted and then told to
        # wait would be retried without looking for the half already in Slack.
        self.slack.pace([card.channel for card in cards], item.id)
        meta = note_metadata(item)
        for card in cards:
            # Only a retry can follow a post that reached Slack unrecorded; a first attempt posts at once.
            if item.attempts > 1:
                what = f"note {item.id} in the thread of {card.channel}/{card.ts}"
                if await self.slack.find_in_thread(card.channel, card.ts, meta, since=item.created_at, what=what):
                    continue
            post = partial(
                self.slack.client.chat_postMessage,
                channel=card.channel,
                thread_ts=card.ts,
                text=payload.text,
                metadata=meta.model_dump(),
            )
            try:
                await self.slack.call("chat.postMessage", post, join=card.channel)
            except RetryAfter as exc:
                if card is cards[0]:
                    raise
                # An earlier thread has the note now: the retry must count as one that reached Slack.
                raise RetryAfter(exc.seconds, str(exc), reached=True) from exc

    async def _cards_of(self, request_ids: Sequence[str]) -> list[list[Card]]:
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = await tx.cards.cards_of(request_ids)
        return [found[request_id] for request_id in request_ids]

    async def _dm(self, item: OutboxItem, payload: DirectMessage) -> None:
        self.slack.pace([payload.user], item.id)
        meta = note_metadata(item)
        if item.attempts > 1:
            what = f"direct message {item.id} to {payload.user}"
            if await self.slack.find_in_dm(payload.user, meta, since=item.created_at, what=what):
                return
        post = partial(
            self.slack.client.chat_postMessage, channel=payload.user, text=payload.text, metadata=meta.model_dump(),
            blocks=payload.blocks,
        )  # fmt: skip
        await self.slack.call("chat.postMessage", post)
