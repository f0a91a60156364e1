"""Cards that are gone from Slack while their request still waits: posted again.

The sandbox's emulated workspace starts empty each time, while its database keeps the requests: a
request still pending from before a restart would have no card anywhere, and every update of it would
find no message. At start, the sandbox asks which recorded cards its workspace still has; the others
are forgotten and their stages' cards queued again, through the outbox like any card.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.service.effects import Effect, PostCard, new_item, post_key
from store.uow import uow

# Whether Slack still has the message at (channel, ts).
InSlack = Callable[[str, str], bool]


async def repost_lost_cards(sessionmaker: async_sessionmaker[AsyncSession], in_slack: InSlack, now: datetime) -> int:
    """Queue a new card for every card of a pending request that Slack no longer has; how many."""
    async with uow(sessionmaker) as tx:
        lost = [card for card in await tx.cards.of_pending() if not in_slack(card.channel, card.ts)]
        if not lost:
            return 0
        tenants = {
            rid: tenant for rid, (tenant, _) in (await tx.requests.statuses_of([c.request_id for c in lost])).items()
        }
        await tx.cards.forget([card.id for card in lost])
        # A fresh dedupe key: the stage's own was spent on the card that was lost.
        items = [
            new_item(
                tenants[card.request_id],
                Effect.POST_CARD,
                PostCard(request_id=card.request_id, stage=card.stage),
                f"{post_key(card.request_id, card.stage)}:again:{card.id}",
            )
            for card in lost
        ]
        await tx.outbox.enqueue_many(items, now=now)
    return len(lost)
