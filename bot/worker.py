"""The outbox worker: delivers side effects (Slack posts and updates, agent callbacks).

Items are claimed with a lease, so a crashed worker's items are picked up again, and several
replicas never deliver one twice at the same time. Cards are rendered from the request's
current state when delivered, so an update is idempotent and a late one never shows stale
votes. Slack's ``Retry-After`` is honoured by rescheduling the item, not by sleeping.

A card carries message metadata naming its request and stage. A retried post looks for it in the
channel first, so a card that reached Slack but was never recorded (our side timed out, or the process
died in between) is adopted, not posted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks
from bot.callbacks import signed_headers
from bot.clock import Clock
from bot.logs import log_context
from bot.metrics import Metrics
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import Callback, DirectMessage, Effect, PostCard, Thread, UpdateCards, enqueue
from bot.service.signals import Signals
from bot.slack.home import HomeRefresher
from policy import PoolView, TenantPolicy
from store.models import OutboxItem, Request, RequestStage, Vote
from store.outbox import RetryPolicy
from store.uow import Tx, uow

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# chat.postMessage errors that no retry fixes: the stage is skipped (see DeadlineKeeper.skip_stage).
UNPOSTABLE = frozenset({"channel_not_found", "is_archived"})
Unpostable = Callable[[str, str, int, str], Awaitable[object]]
SLACK_RETRY = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(minutes=5))
CALLBACK_RETRY = RetryPolicy(base=timedelta(seconds=2), cap=timedelta(minutes=10))
# Every card carries this message metadata (its PostCard payload), so a retry can find a card that Slack
# posted but this worker never recorded (a timeout, a crash) instead of posting it twice.
CARD_EVENT = "countersign_card"
# The look-up reads the channel back to the stage's opening, less this much for Slack's clock and ours,
# in at most LOOKUP_PAGES pages of LOOKUP_LIMIT messages (newest first); beyond that it posts anyway.
LOOKUP_SKEW = timedelta(minutes=5)
LOOKUP_LIMIT = 100
LOOKUP_PAGES = 5
# Look-up answers that no retry changes (an install without the history scopes, a channel gone): post
# without looking, as before the look-up existed (a duplicate is possible; a missing card is worse).
LOOKUP_BLIND = UNPOSTABLE | {"missing_scope", "not_in_channel"}


class RetryAfter(Exception):
    """Deliver this item again after ``seconds`` (Slack said so)."""

    def __init__(self, seconds: float, error: str) -> None:
        super().__init__(error)
        self.seconds = seconds


class _Metadata(BaseModel):
    event_type: str
    event_payload: dict[str, object]


class _Message(BaseModel):
    ts: str
    bot_id: str | None = None
    metadata: _Metadata | None = None

    def is_card(self, card: PostCard, bot_id: str) -> bool:
        # Only our own messages: another app could post a look-alike to keep the real card out.
        meta = self.metadata
        return (
            self.bot_id == bot_id
            and meta is not None
            and meta.event_type == CARD_EVENT
            and meta.event_payload == card.model_dump()
        )


class _Cursor(BaseModel):
    next_cursor: str = ""


class _History(BaseModel):
    """The part of a conversations.history answer the card look-up reads."""

    messages: list[_Message]
    response_metadata: _Cursor = _Cursor()


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


class OutboxWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        slack: AsyncWebClient,
        http: aiohttp.ClientSession,
        policies: PolicySet,
        clock: Clock,
        signals: Signals,
        homes: HomeRefresher,
        batch: int = 50,
        slack_retry: RetryPolicy = SLACK_RETRY,
        callback_retry: RetryPolicy = CALLBACK_RETRY,
        metrics: Metrics | None = None,
        on_unpostable: Unpostable | None = None,
    ) -> None:
        self.metrics = metrics
        self.on_unpostable = on_unpostable
        self.sessionmaker = sessionmaker
        self.slack = slack
        self.http = http
        self.policies = policies
        self.clock = clock
        self.batch = batch
        # Backoffs are attributes so a test (or an operator's tuning) can shorten them without sleeping.
        self.slack_retry = slack_retry
        self.callback_retry = callback_retry
        self.id = f"worker-{uuid.uuid4().hex[:12]}"
        self._bot_id: str | None = None  # ours, from auth.test when a look-up first needs it
        self._wake = signals.outbox
        self._homes = homes
        self._handlers: dict[str, Callable[[OutboxItem], Awaitable[None]]] = {
            Effect.POST_CARD: self._post_card,
            Effect.UPDATE_CARDS: self._update_cards,
            Effect.THREAD: self._thread,
            Effect.DM: self._dm,
            Effect.CALLBACK: self._callback,
            Effect.REFRESH_HOMES: self._homes.deliver,
        }

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set; sleeps until woken or the next item is due (at most 1 s)."""
        while not stop.is_set():
            # Cleared before the pass, not after: a wake during the pass (an item committed after our
            # claim) must cut the sleep short, or that item waits for the idle timeout.
            self._wake.clear()
            try:
                if await self.drain_once():
                    continue
            except Exception:
                log.exception("outbox worker pass failed")
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=await self._idle_seconds(), return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            stopper.cancel()

    async def _idle_seconds(self) -> float:
        async with uow(self.sessionmaker, read_only=True) as tx:
            nxt = await tx.outbox.next_available_at()
        if nxt is None:
            return 1.0
        return max(0.0, min(1.0, (nxt - self.clock.now()).total_seconds()))

    async def drain_once(self) -> int:
        """Claim and deliver one batch; returns how many items were claimed."""
        async with uow(self.sessionmaker) as tx:
            items = await tx.outbox.claim(self.id, now=self.clock.now(), lease=LEASE, limit=self.batch)
        self._homes.begin_pass()
        # One request's effects stay in order (post before update); different requests go in parallel.
        groups: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            groups[str(item.payload.get("request_id") or item.id)].append(item)
        delivered = await asyncio.gather(*(self._deliver_group(g) for g in groups.values()))
        done = [item_id for group in delivered for item_id in group]
        if done:
            # One commit for the batch's acks: a commit per item was most of the worker's writes, and on
            # SQLite every write waits for the one before it.
            async with uow(self.sessionmaker) as tx:
                await tx.outbox.ack_many(done, self.id, now=self.clock.now())
        return len(items)

    async def _deliver_group(self, items: list[OutboxItem]) -> list[int]:
        """Deliver one request's items in order; returns the ids of those to acknowledge."""
        done = []
        for n, item in enumerate(items):
            if item.kind == Effect.UPDATE_CARDS and any(i.kind == Effect.UPDATE_CARDS for i in items[n + 1 :]):
                # Cards are rendered from the current state, so the batch's last update shows this one too.
                done.append(item.id)
                continue
            if await self._deliver(item):
                done.append(item.id)
        return done

    async def _deliver(self, item: OutboxItem) -> bool:
        """True when delivered (to be acknowledged); a failure is rescheduled here."""
        request_id = item.payload.get("request_id")
        with log_context(tenant=item.tenant, request_id=request_id if isinstance(request_id, str) else None):
            return await self._deliver_in_context(item)

    async def _deliver_in_context(self, item: OutboxItem) -> bool:
        handler = self._handlers.get(item.kind)
        try:
            if handler is None:
                raise ValueError(f"unknown outbox kind {item.kind!r}")
            await handler(item)
        except RetryAfter as exc:
            await self._fail(
                item,
                str(exc),
                RetryPolicy(base=timedelta(seconds=exc.seconds), cap=timedelta(seconds=exc.seconds), jitter_ratio=0),
            )
        except Exception as exc:
            log.warning("outbox item %s (%s) failed: %s", item.id, item.kind, exc)
            await self._fail(
                item,
                f"{type(exc).__name__}: {exc}",
                self.callback_retry if item.kind == Effect.CALLBACK else self.slack_retry,
            )
        else:
            return True
        return False

    async def _fail(self, item: OutboxItem, error: str, retry: RetryPolicy) -> None:
        async with uow(self.sessionmaker) as tx:
            await tx.outbox.fail(item.id, self.id, now=self.clock.now(), error=error, retry=retry)

    # -- Slack ----------------------------------------------------------------------------

    async def _slack(self, method: str, **kwargs: object) -> dict[str, object]:
        """Call the Web API; a 429 becomes RetryAfter, ``not_in_channel`` a join and one retry."""
        call = getattr(self.slack, method)
        try:
            response = await call(**kwargs)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            api = method.replace("_", ".", 1)  # chat_postMessage -> chat.postMessage, as Slack names it
            if self.metrics is not None:
                self.metrics.slack_error(api, error)
            if exc.response.status_code == 429 or error in ("ratelimited", "rate_limited"):
                if self.metrics is not None:
                    self.metrics.ratelimited(api)
                raise RetryAfter(float(exc.response.headers.get("Retry-After", 1)), f"{method}: {error}") from exc
            if error == "not_in_channel" and "channel" in kwargs:
                await self.slack.conversations_join(channel=str(kwargs["channel"]))
                response = await call(**kwargs)
            else:
                raise
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def _post_card(self, item: OutboxItem) -> None:
        payload = PostCard.model_validate(item.payload)
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = await self._read(tx, item.tenant, payload.request_id, [payload.stage])
            posted = found is not None and any(c.stage == payload.stage for c in await tx.requests.cards(found.row.id))
        stage = found.stage(payload.stage) if found is not None else None
        if found is None or posted or stage is None or not stage.channel:
            return  # gone, already posted by an earlier attempt, or nowhere to post
        row, view = found.row, found.card(payload.stage, self.policies.tenants.get(item.tenant))
        channel = stage.channel
        # Only a retry can follow a post that reached Slack unrecorded; a first attempt posts at once.
        ts = await self._find_card(channel, payload, since=stage.opened_at) if item.attempts > 1 else None
        adopted = ts is not None
        if ts is None:
            try:
                response = await self._slack(
                    "chat_postMessage",
                    channel=channel,
                    text=blocks.card_text(view),
                    blocks=blocks.request_card(view),
                    metadata={"event_type": CARD_EVENT, "event_payload": payload.model_dump()},
                )
            except SlackApiError as exc:
                error = str(exc.response.get("error", ""))
                if error not in UNPOSTABLE or self.on_unpostable is None:
                    raise
                # The pool's channel is gone or archived: retrying cannot help. Move the request on now.
                await self.on_unpostable(item.tenant, payload.request_id, payload.stage, error)
                return
            channel, ts = str(response["channel"]), str(response["ts"])
        async with uow(self.sessionmaker) as tx:
            await tx.requests.add_card(row.id, stage=payload.stage, channel=channel, ts=ts, now=self.clock.now())
            fresh = await tx.requests.get(item.tenant, row.id)
            # A vote landed between rendering and recording the card, or the card found was rendered by an
            # earlier attempt: render it once more.
            if fresh is not None and (adopted or fresh.version != row.version):
                await enqueue(tx, fresh.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), self.clock.now())
                self.wake()

    async def _find_card(self, channel: str, card: PostCard, *, since: datetime) -> str | None:
        """The ts of ``card`` if this bot already posted it in ``channel`` (read back from Slack), else None."""
        bot_id = await self._own_bot_id()
        cursor = ""
        for _ in range(LOOKUP_PAGES):
            try:
                answer = await self._slack(
                    "conversations_history",
                    channel=channel,
                    include_all_metadata=True,
                    oldest=f"{(since - LOOKUP_SKEW).timestamp():.6f}",
                    limit=LOOKUP_LIMIT,
                    cursor=cursor or None,
                )
            except SlackApiError as exc:
                error = str(exc.response.get("error", ""))
                if error not in LOOKUP_BLIND:
                    raise
                log.warning(
                    "cannot look for card %s/%s in %s (%s): posting it", card.request_id, card.stage, channel, error
                )
                return None
            page = _History.model_validate(answer)
            found = next((m.ts for m in page.messages if m.is_card(card, bot_id)), None)
            if found is not None:
                log.info("card %s/%s was posted but not recorded: adopting %s", card.request_id, card.stage, found)
                return found
            cursor = page.response_metadata.next_cursor
            if not cursor:
                return None
        log.warning(
            "card %s/%s not found in %s pages of %s: posting it", card.request_id, card.stage, LOOKUP_PAGES, channel
        )
        return None

    async def _own_bot_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = str((await self._slack("auth_test"))["bot_id"])
        return self._bot_id

    async def _update_cards(self, item: OutboxItem) -> None:
        payload = UpdateCards.model_validate(item.payload)
        async with uow(self.sessionmaker, read_only=True) as tx:
            cards = await tx.requests.cards(payload.request_id)
            found = await self._read(tx, item.tenant, payload.request_id, [c.stage for c in cards]) if cards else None
        if found is None:
            return
        policy = self.policies.tenants.get(item.tenant)
        for card in cards:
            view = found.card(card.stage, policy)
            await self._slack(
                "chat_update",
                channel=card.channel,
                ts=card.ts,
                text=blocks.card_text(view),
                blocks=blocks.request_card(view),
            )

    async def _thread(self, item: OutboxItem) -> None:
        payload = Thread.model_validate(item.payload)
        async with uow(self.sessionmaker, read_only=True) as tx:
            cards = await tx.requests.cards(payload.request_id)
        for card in cards:
            await self._slack("chat_postMessage", channel=card.channel, thread_ts=card.ts, text=payload.text)

    async def _dm(self, item: OutboxItem) -> None:
        payload = DirectMessage.model_validate(item.payload)
        await self._slack("chat_postMessage", channel=payload.user, text=payload.text)

    async def _read(self, tx: Tx, tenant: str, request_id: str, stages: Sequence[int]) -> _Cards | None:
        """The request as its cards for ``stages`` need it, read once; None if it is gone."""
        row = await tx.requests.get(tenant, request_id)
        if row is None:
            return None
        votes, opened = await tx.requests.votes(row.id), await tx.requests.stages(row.id)
        # Only a later stage's card mentions its pool's members; stage 0's (every request's) needs no pools.
        pools = await tx.pools.views(tenant) if any(i > 0 for i in stages) else {}
        return _Cards(row, votes, opened, pools)

    # -- agents ---------------------------------------------------------------------------

    async def _callback(self, item: OutboxItem) -> None:
        payload = Callback.model_validate(item.payload)
        async with uow(self.sessionmaker) as tx:
            row = await tx.requests.get(item.tenant, payload.request_id)
            if row is None or not row.callback_url:
                return
            resource = render.resource(row, await tx.requests.votes(row.id), await tx.requests.stages(row.id))
            secret = await tx.tenants.callback_secret(item.tenant, now=self.clock.now())
        body = json.dumps(resource.model_dump(mode="json"), separators=(",", ":")).encode()
        headers = signed_headers(secret, body, int(self.clock.now().timestamp()))
        timeout = aiohttp.ClientTimeout(total=10)
        # Redirects are not followed: they could lead outside the tenant's allowed hosts.
        async with self.http.post(
            row.callback_url, data=body, headers=headers, allow_redirects=False, timeout=timeout
        ) as resp:
            if not 200 <= resp.status < 300:
                if self.metrics is not None:
                    self.metrics.callback(item.tenant, "failed_attempt")
                raise RuntimeError(f"callback answered HTTP {resp.status}")
        if self.metrics is not None:
            self.metrics.callback(item.tenant, "delivered")
        async with uow(self.sessionmaker) as tx:
            await tx.audit.append(
                item.tenant, "callback.delivered", now=self.clock.now(), request_id=row.id,
                payload={"attempt": item.attempts, "status": resp.status},
            )  # fmt: skip
