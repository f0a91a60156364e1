"""Request cards in Slack: posted once per stage (a retry adopts a card that got there unrecorded), and
re-rendered from the request's current state, so an update is idempotent and never shows stale votes.

A card carries message metadata naming its request and stage (its PostCard payload). A retried post
looks for it in the channel first, so a card that reached Slack but was never recorded (our side timed
out, or the process died in between) is adopted, not posted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks
from bot.clock import Clock
from bot.outbox.delivery import parse
from bot.outbox.slackcalls import UNPOSTABLE, SlackCalls, error_of, metadata
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import Effect, PostCard, UpdateCards, enqueue
from bot.service.signals import Signals
from policy import PoolView, TenantPolicy
from store.models import OutboxItem, Request, RequestStage, Vote
from store.uow import Tx, uow

log = logging.getLogger(__name__)

# (tenant, request_id, stage, error): the stage's channel cannot be posted to; see DeadlineKeeper.skip_stage.
Unpostable = Callable[[str, str, int, str], Awaitable[object]]
CARD_EVENT = "countersign_card"


@dataclass(frozen=True, slots=True)
class _Cards:
    """One read of a request, from which the card of any of its stages renders."""

    row: Request
    votes: Sequence[Vote]
    stages: Sequence[RequestStage]
    pools: Mapping[str, PoolView]

    def stage(self, index: int) -> RequestStage | None:
        return render.stage_at(self.stages, index)

    def card(self, index: int, policy: TenantPolicy | None) -> blocks.Card:
        """The card for stage ``index``; a later stage's card mentions who in its pool can still vote."""
        opened = self.stage(index)
        pool = self.pools.get(opened.pool) if index > 0 and opened is not None else None
        mentions = sorted(pool.eligible(exclude=self.row.on_behalf_of)) if pool is not None else []
        return render.card(self.row, self.votes, self.stages, policy, for_stage=index, mentions=mentions)


class CardDelivery:
    """Delivers :data:`Effect.POST_CARD` and :data:`Effect.UPDATE_CARDS`."""

    kinds: Collection[str] = frozenset({Effect.POST_CARD, Effect.UPDATE_CARDS})

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        slack: SlackCalls,
        policies: PolicySet,
        clock: Clock,
        signals: Signals,
        on_unpostable: Unpostable | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.slack = slack
        self.policies = policies
        self.clock = clock
        self.signals = signals
        self.on_unpostable = on_unpostable
        self._rendered: set[tuple[str, int, tuple[str, ...]]] = set()

    def begin_pass(self) -> None:
        """A new batch: the requests' cards rendered from here on show every change its items announce
        (they committed before the claim), so a request's cards are updated once per batch."""
        self._rendered = set()

    async def deliver(self, item: OutboxItem) -> None:
        if item.kind == Effect.POST_CARD:
            await self._post(item, parse(PostCard, item))
        else:
            await self._update(item, parse(UpdateCards, item))

    async def _post(self, item: OutboxItem, payload: PostCard) -> None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = await self._read(tx, item.tenant, payload.request_id, [payload.stage])
            posted = found is not None and any(c.stage == payload.stage for c in await tx.cards.cards(found.row.id))
        stage = found.stage(payload.stage) if found is not None else None
        if found is None or posted or stage is None or not stage.channel:
            return  # gone, already posted by an earlier attempt, or nowhere to post
        row, view = found.row, found.card(payload.stage, self.policies.tenants.get(item.tenant))
        channel = stage.channel
        meta = metadata(CARD_EVENT, payload.model_dump())
        # Only a retry can follow a post that reached Slack unrecorded; a first attempt posts at once.
        ts = None
        if item.attempts > 1:
            what = f"card {payload.request_id}/{payload.stage} in {channel}"
            ts = await self.slack.find_in_history(channel, meta, since=stage.opened_at, what=what)
        adopted = ts is not None
        if ts is None:
            try:
                post = partial(
                    self.slack.client.chat_postMessage,
                    channel=channel,
                    text=blocks.card_text(view),
                    blocks=blocks.request_card(view),
                    metadata=meta.model_dump(),
                )
                response = await self.slack.call("chat.postMessage", post, join=channel)
            except SlackApiError as exc:
                if error_of(exc) not in UNPOSTABLE or self.on_unpostable is None:
                    raise
                # The pool's channel is gone or archived: retrying cannot help. Move the request on now.
                await self.on_unpostable(item.tenant, payload.request_id, payload.stage, error_of(exc))
                return
            channel, ts = str(response["channel"]), str(response["ts"])
        queued = False
        async with uow(self.sessionmaker) as tx:
            await tx.cards.add_card(row.id, stage=payload.stage, channel=channel, ts=ts, now=self.clock.now())
            fresh = await tx.requests.get(item.tenant, row.id)
            # A vote landed between rendering and recording the card, or the card found was rendered by an
            # earlier attempt: render it once more.
            if fresh is not None and (adopted or fresh.version != row.version):
                await enqueue(tx, fresh.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), self.clock.now())
                queued = True
        if queued:
            self.signals.queued()

    async def _update(self, item: OutboxItem, payload: UpdateCards) -> None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            cards = await tx.cards.cards(payload.request_id)
            found = await self._read(tx, item.tenant, payload.request_id, [c.stage for c in cards]) if cards else None
        if found is None:
            return
        done = (found.row.id, found.row.version, tuple(c.ts for c in cards))
        if done in self._rendered:
            return  # this batch already showed these cards in this state
        policy = self.policies.tenants.get(item.tenant)
        for card in cards:
            view = found.card(card.stage, policy)
            update = partial(
                self.slack.client.chat_update,
                channel=card.channel,
                ts=card.ts,
                text=blocks.card_text(view),
                blocks=blocks.request_card(view),
            )
            await self.slack.call("chat.update", update, join=card.channel)
        self._rendered.add(done)

    async def _read(self, tx: Tx, tenant: str, request_id: str, stages: Sequence[int]) -> _Cards | None:
        """The request as its cards for ``stages`` need it, read once; None if it is gone."""
        row = await tx.requests.get(tenant, request_id)
        if row is None:
            return None
        votes, opened = await tx.votes.votes(row.id), await tx.stages.stages(row.id)
        # Only a later stage's card mentions its pool's members; stage 0's (every request's) needs no pools.
        pools = await tx.pools.views(tenant) if any(i > 0 for i in stages) else {}
        return _Cards(row, votes, opened, pools)
