"""Request cards in Slack: posted once per stage (a retry adopts a card that got there unrecorded), and
re-rendered from the request's current state, so an update is idempotent and never shows stale votes.

A card carries message metadata naming its request and stage (its PostCard payload). A retried post
looks for it in the channel first, so a card that reached Slack but was never recorded (our side timed
out, or the process died in between) is adopted, not posted twice.

A pass reads every request its claimed items name at once (four queries for the batch), and the cards
it posts are recorded with their items' acknowledgements (one transaction for the cards that end
together), so what a card costs beyond its Slack call is shared by its batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks, questionblocks
from bot.clock import Clock
from bot.metrics import Metrics
from bot.outbox.delivery import parse
from bot.outbox.slackcalls import UNPOSTABLE, Refused, SlackCalls, error_of, metadata
from bot.policyset import PolicySet
from bot.service import render
from bot.service.admission import who_can_vote
from bot.service.effects import Effect, PostCard, UpdateCards, new_item
from bot.service.questions import question_card
from bot.service.transitions import QUESTION
from policy import PoolView, TenantPolicy
from store.answers import AnswerRepository
from store.cards import NewCard
from store.models import Card, OutboxItem, QuestionAnswer, Request, RequestStage, Vote
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
    # Where its cards are: as read, and those this pass posted (recorded with their acks, not yet read back).
    cards: list[Card] = field(default_factory=list)
    answer: QuestionAnswer | None = None  # a question's (bot.service.questions), once answered

    def message(self, index: int, policy: TenantPolicy | None) -> tuple[str, list[blocks.Block]]:
        """The notification text and blocks of stage ``index``'s card: a request's, or a question's."""
        if self.row.kind == QUESTION:
            view = question_card(self.row, self.stages, self.answer)
            return questionblocks.card_text(view), questionblocks.question_card(view)
        card = self.card(index, policy)
        return blocks.card_text(card), blocks.request_card(card)

    def has_card(self, stage: int) -> bool:
        return any(c.stage == stage for c in self.cards)

    def stage(self, index: int) -> RequestStage | None:
        return render.stage_at(self.stages, index)

    def card(self, index: int, policy: TenantPolicy | None) -> blocks.Card:
        """The card for stage ``index``, saying who can still approve; a later stage's card mentions its
        pool's members."""
        opened = self.stage(index)
        escalated = index > 0 and opened is not None
        if opened is not None and opened.line is not None:
            # A cross-pool quorum's lines all open at once: only a line's later stage was escalated to.
            escalated = any(s.line == opened.line and s.index < index for s in self.stages)
        pool = self.pools.get(opened.pool) if escalated and opened is not None else None
        mentions = sorted(pool.eligible(exclude=self.row.on_behalf_of)) if pool is not None else []
        # Whom admission would let vote (away members and delegates included), less who voted and whom it acts for.
        can = who_can_vote(self.row, self.votes, self.stages, self.pools)
        return render.card(
            self.row, self.votes, self.stages, policy, for_stage=index, mentions=mentions, approvers=sorted(can),
            pools=self.pools,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Posted:
    """A card this pass put in Slack (posted, or found there and adopted), to record with its ack."""

    tenant: str
    card: NewCard
    version: int  # the request's version the card shows
    adopted: bool


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
        on_unpostable: Unpostable | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.slack = slack
        self.policies = policies
        self.clock = clock
        self.on_unpostable = on_unpostable
        self.metrics = metrics
        # What the batches in flight read of their requests, kept while any of their items is undelivered.
        self._read: dict[str, _Cards | None] = {}
        self._undelivered: Counter[str] = Counter()
        # The state each request's cards were last shown in (version, card ts's), while it is in flight.
        self._shown: dict[str, tuple[int, tuple[str, ...]]] = {}

    async def begin_pass(self, items: Sequence[OutboxItem]) -> None:
        """A new batch: read its requests at once. They show every change the batch's items announce
        (those committed before the claim), so each request's cards are updated at most once for them."""
        ids = [_request_id(item) for item in items]
        self._undelivered.update(i for i in ids if i is not None)
        for request_id in ids:
            # An older batch's read must not stand in for this one's, even if this read fails.
            self._read.pop(request_id or "", None)
        await self._load(items)

    async def deliver(self, item: OutboxItem) -> _Posted | None:
        try:
            if item.kind == Effect.POST_CARD:
                return await self._post(item, parse(PostCard, item))
            await self._update(item, parse(UpdateCards, item))
            return None
        finally:
            self._done_with(_request_id(item))

    def _done_with(self, request_id: str | None) -> None:
        if request_id is None:
            return
        self._undelivered[request_id] -= 1
        if self._undelivered[request_id] <= 0:
            del self._undelivered[request_id]
            self._read.pop(request_id, None)
            self._shown.pop(request_id, None)

    async def record(self, tx: Tx, outcomes: Sequence[Any]) -> bool:
        """Record the posted cards; a request that changed since its card was rendered (or whose card was
        adopted, rendered by an earlier attempt) gets its cards re-rendered. True if that queued any."""
        posted: list[_Posted] = list(outcomes)
        await tx.cards.add_cards([p.card for p in posted], now=self.clock.now())
        fresh = await tx.requests.by_ids([p.card.request_id for p in posted])
        stale = sorted(
            {
                (p.tenant, p.card.request_id)
                for p in posted
                if (row := fresh.get(p.card.request_id)) is not None and (p.adopted or row.version != p.version)
            }
        )
        updates = [new_item(t, Effect.UPDATE_CARDS, UpdateCards(request_id=r)) for t, r in stale]
        await tx.outbox.enqueue_many(updates, now=self.clock.now())
        return bool(updates)

    async def _post(self, item: OutboxItem, payload: PostCard) -> _Posted | None:
        found = await self._request(item, payload.request_id)
        stage = found.stage(payload.stage) if found is not None else None
        if found is None or stage is None or not stage.channel or found.has_card(payload.stage):
            return None  # gone, already posted by an earlier attempt, or nowhere to post
        row = found.row
        text, shown = found.message(payload.stage, self.policies.tenants.get(item.tenant))
        channel = stage.channel
        self.slack.pace([channel], item.id)  # before anything reaches Slack: its turn in the channel, or later
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
                    text=text,
                    blocks=shown,
                    metadata=meta.model_dump(),
                )
                response = await self.slack.call("chat.postMessage", post, join=channel)
            except (SlackApiError, Refused) as exc:
                if (not isinstance(exc, Refused) and error_of(exc) not in UNPOSTABLE) or self.on_unpostable is None:
                    raise
                # The pool's channel is gone or archived, or Slack refuses the card itself: retrying cannot
                # help. Move the request on now (the next stage, or fail closed), and its admins are told.
                await self.on_unpostable(item.tenant, payload.request_id, payload.stage, error_of(exc))
                return None
            channel, ts = str(response["channel"]), str(response["ts"])
            if payload.stage == 0 and self.metrics is not None:
                # The first card is when reviewers can first see the request (an adopted one's time is unknown).
                self.metrics.card_posted(item.tenant, (self.clock.now() - row.created_at).total_seconds())
        card = NewCard(request_id=row.id, stage=payload.stage, channel=channel, ts=ts)
        found.cards.append(Card(request_id=row.id, stage=payload.stage, channel=channel, ts=ts))
        return _Posted(item.tenant, card, row.version, adopted)

    async def _update(self, item: OutboxItem, payload: UpdateCards) -> None:
        found = await self._request(item, payload.request_id)
        if found is None or not found.cards:
            return
        cards = found.cards
        state = (found.row.version, tuple(c.ts for c in cards))
        if self._shown.get(found.row.id) == state:
            return  # already shown in this state (an earlier item of the same change)
        policy = self.policies.tenants.get(item.tenant)
        for card in cards:
            text, shown = found.message(card.stage, policy)
            update = partial(self.slack.client.chat_update, channel=card.channel, ts=card.ts, text=text, blocks=shown)
            try:
                await self.slack.call("chat.update", update, join=card.channel)
            except Refused as exc:
                # This card is gone for good (deleted, its channel archived): the request's other cards
                # are still updated, now and by every later change.
                log.warning("card %s in %s cannot be updated (%s): skipped", card.ts, card.channel, exc.error)
        self._shown[found.row.id] = state

    async def _request(self, item: OutboxItem, request_id: str) -> _Cards | None:
        """The request as this pass read it; one the pass did not read ahead is read now."""
        if request_id not in self._read:
            await self._load([item])
        return self._read.get(request_id)

    async def _load(self, items: Sequence[OutboxItem]) -> None:
        """Read the requests ``items`` name, each with its votes, stages and cards (four queries for all)."""
        tenant_of: dict[str, str] = {}
        for item in items:
            if (request_id := _request_id(item)) is not None:
                tenant_of[request_id] = item.tenant
        if not tenant_of:
            return
        ids = sorted(tenant_of)
        async with uow(self.sessionmaker, read_only=True) as tx:
            rows = await tx.requests.by_ids(ids)
            votes, stages = await tx.votes.votes_of(ids), await tx.stages.stages_of(ids)
            cards = await tx.cards.cards_of(ids)
            questions = [i for i, row in rows.items() if row.kind == QUESTION and row.status.is_final]
            answers = await AnswerRepository(tx.session).of(questions)
            # Every card says who can approve: one read of each tenant's pools for the batch.
            pools = {tenant: await tx.pools.views(tenant) for tenant in sorted(set(tenant_of.values()))}
        for request_id in ids:
            row = rows.get(request_id)
            # Another tenant's id in an item is no request of this item's.
            if row is None or row.tenant != tenant_of[request_id]:
                self._read[request_id] = None
                continue
            held = self._read.get(request_id)
            if held is not None and held.row.version >= row.version:
                # Two batches read ahead at once and the other's, as new or newer, landed first: keep it
                # (and the cards this process posted since), never step back to an older state.
                continue
            self._read[request_id] = _Cards(
                row, votes[request_id], stages[request_id], pools.get(row.tenant, {}), cards[request_id],
                answers.get(request_id),
            )  # fmt: skip


def _request_id(item: OutboxItem) -> str | None:
    request_id = item.payload.get("request_id")
    return request_id if isinstance(request_id, str) else None
