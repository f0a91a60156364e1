"""The Web API as the deliveries call it, and the look-up that makes a retried post exactly-once.

Slack has no idempotency key for chat.postMessage: a post whose answer was lost (our side timed
out, or the process died before recording it) may or may not be in Slack. So every message the
outbox posts carries message metadata naming what it is, and a retried post first reads the
conversation (or the thread) back for a message of this bot with that metadata; one found is
adopted instead of posted again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import Metrics
from bot.outbox.delivery import GiveUp, RetryAfter
from bot.outbox.pacing import Pacer

log = logging.getLogger(__name__)

# chat.postMessage errors that no retry fixes: the pool's channel is gone (a card moves on to the next stage).
UNPOSTABLE = frozenset({"channel_not_found", "is_archived"})
# Errors no retry fixes, of any call: retried, they would fail every time for a day. The item is given up
# on at once (a card's stage is skipped as for UNPOSTABLE, and the tenant's admins told). Not among them:
# auth errors (a fixed token and a restart deliver what waited) and, but for cards, UNPOSTABLE (a channel
# can be unarchived, or the bot invited back: a thread note waits for that).
PERMANENT = {
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_arguments",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    "msg_too_long",
    "no_text",
    "too_many_attachments",
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
    "cannot_dm_bot",
    "user_not_found",
    "user_disabled",
    "method_not_supported_for_channel_type",
}
# The look-up reads back to the item's creation, less this much for Slack's clock and ours, in at
# most LOOKUP_PAGES pages of LOOKUP_LIMIT messages; beyond that it posts anyway.
LOOKUP_SKEW = timedelta(minutes=5)
LOOKUP_LIMIT = 100
LOOKUP_PAGES = 5
# Look-up answers that no retry changes (an install without the history scopes, a channel gone): post
# without looking, as before the look-up existed (a duplicate is possible; a missing message is worse).
LOOKUP_BLIND = UNPOSTABLE | {"missing_scope", "not_in_channel", "thread_not_found", "user_not_found"}

Request = Callable[[], Awaitable[AsyncSlackResponse]]
Page = Callable[[str | None], Awaitable[AsyncSlackResponse]]


class Metadata(BaseModel):
    event_type: str
    event_payload: dict[str, object]


class _Message(BaseModel):
    ts: str
    bot_id: str | None = None
    metadata: Metadata | None = None


class _Cursor(BaseModel):
    next_cursor: str = ""


class _Messages(BaseModel):
    """The part of a conversations.history or conversations.replies answer the look-up reads."""

    messages: list[_Message]
    response_metadata: _Cursor = _Cursor()


class _Id(BaseModel):
    id: str


class _Opened(BaseModel):
    channel: _Id


class Refused(GiveUp):
    """Slack refused a call for good (an error in PERMANENT): the item is given up on, not retried."""

    def __init__(self, api: str, error: str) -> None:
        super().__init__(f"{api}: {error}")
        self.api = api
        self.error = error


def error_of(exc: SlackApiError | Refused) -> str:
    if isinstance(exc, Refused):
        return exc.error
    return str(exc.response.get("error", ""))


def oldest(since: datetime) -> str:
    """The ``oldest`` argument of a look-up for something queued at ``since``."""
    return f"{(since - LOOKUP_SKEW).timestamp():.6f}"


class SlackCalls:
    """Calls the Web API: a 429 becomes :class:`RetryAfter`, an error no retry fixes :class:`Refused`,
    ``not_in_channel`` a join and one retry; posts to one channel are paced to ``channel_rate`` a second."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics | None = None, *, channel_rate: float = 0) -> None:
        self.client = client
        self.metrics = metrics
        self.pacer = Pacer(channel_rate) if channel_rate > 0 else None
        self._bot_id: str | None = None  # ours, from auth.test when a look-up first needs it

    def pace(self, channels: Iterable[str], item: int) -> None:
        """Before an item posts anything to ``channels``: its turn in each (see :mod:`bot.outbox.pacing`),
        or :class:`RetryAfter` until then (nothing was posted, so it is not counted as an attempt)."""
        if self.pacer is None:
            return
        channels = list(channels)
        wait = self.pacer.wait(channels, item)
        if wait > 0:
            raise RetryAfter(wait, f"paced: its turn in {', '.join(channels)} comes in {wait:.2f} s", reached=False)

    async def call(self, api: str, request: Request, *, join: str | None = None) -> dict[str, object]:
        """``request()`` (the Web API method ``api``); with ``join``, a ``not_in_channel`` joins that channel
        and tries once more."""
        try:
            response = await request()
        except SlackApiError as exc:
            error = error_of(exc)
            # The error itself is counted by the Slack session's trace (bot.slack.calltrace), with Bolt's.
            if exc.response.status_code == 429 or error in ("ratelimited", "rate_limited"):
                if self.metrics is not None:
                    self.metrics.ratelimited(api)
                seconds = float(exc.response.headers.get("Retry-After", 1))
                # Slack refused before doing anything: the retry need not look for what this attempt left.
                raise RetryAfter(seconds, f"{api}: {error}", reached=False) from exc
            if error in PERMANENT:
                raise Refused(api, error) from exc
            if error != "not_in_channel" or join is None:
                raise
            await self.call("conversations.join", lambda: self.client.conversations_join(channel=join))
            return await self.call(api, request)  # sorted (429, permanent) as the first try was
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def publish_home(self, user: str, view: dict[str, Any]) -> object:
        """views.publish of ``user``'s App Home (for the outbox's Home refreshes)."""
        return await self.call("views.publish", partial(self.client.views_publish, user_id=user, view=view))

    async def bot_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = str((await self.call("auth.test", self.client.auth_test))["bot_id"])
        return self._bot_id

    async def find(self, api: str, page: Page, meta: Metadata, *, what: str, join: str | None = None) -> str | None:
        """The ts of this bot's message carrying ``meta`` among the pages ``page(cursor)`` answers (``api``
        is conversations.history or conversations.replies), or None: not there, or not readable. With
        ``join``, a channel the bot was removed from is joined to read it."""
        bot_id = await self.bot_id()
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            try:
                answer = await self.call(api, partial(page, cursor), join=join)
            except (SlackApiError, Refused) as exc:
                if error_of(exc) not in LOOKUP_BLIND:
                    raise
                log.warning("cannot look for %s (%s): posting it", what, error_of(exc))
                return None
            found = _Messages.model_validate(answer)
            ts = next((m.ts for m in found.messages if m.bot_id == bot_id and m.metadata == meta), None)
            if ts is not None:
                log.info("%s was posted but not recorded: adopting %s", what, ts)
                return ts
            cursor = found.response_metadata.next_cursor
            if not cursor:
                return None
        log.warning("%s not found in %s pages: posting it", what, LOOKUP_PAGES)
        return None

    async def find_in_history(
        self, channel: str, meta: Metadata, *, since: datetime, what: str, join: bool = True
    ) -> str | None:
        """This bot's message carrying ``meta`` among ``channel``'s messages since ``since`` (less the skew)."""

        def page(cursor: str | None) -> Awaitable[AsyncSlackResponse]:
            return self.client.conversations_history(
                channel=channel, include_all_metadata=True, oldest=oldest(since), limit=LOOKUP_LIMIT, cursor=cursor
            )

        return await self.find("conversations.history", page, meta, what=what, join=channel if join else None)

    async def find_in_thread(
        self, channel: str, thread_ts: str, meta: Metadata, *, since: datetime, what: str
    ) -> str | None:
        """This bot's reply carrying ``meta`` in the thread of ``thread_ts`` since ``since`` (less the skew)."""

        def page(cursor: str | None) -> Awaitable[AsyncSlackResponse]:
            return self.client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                include_all_metadata=True,
                oldest=oldest(since),
                limit=LOOKUP_LIMIT,
                cursor=cursor,
            )

        return await self.find("conversations.replies", page, meta, what=what, join=channel)

    async def find_in_dm(self, user: str, meta: Metadata, *, since: datetime, what: str) -> str | None:
        """This bot's message carrying ``meta`` in its DM with ``user`` since ``since`` (less the skew).

        Reading a DM takes its conversation id (conversations.* do not take a user id, as chat.postMessage
        does), from conversations.open: ``im:write``, then ``im:history`` to read it.
        """
        try:
            opened = await self.call("conversations.open", partial(self.client.conversations_open, users=user))
        except (SlackApiError, Refused) as exc:
            if error_of(exc) not in LOOKUP_BLIND:
                raise
            log.warning("cannot look for %s (%s): posting it", what, error_of(exc))
            return None
        channel = _Opened.model_validate(opened).channel.id
        return await self.find_in_history(channel, meta, since=since, what=what, join=False)


def metadata(event_type: str, payload: Mapping[str, object]) -> Metadata:
    return Metadata(event_type=event_type, event_payload=dict(payload))
