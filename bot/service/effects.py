"""Side effects that go through the outbox: their kinds, typed payloads, dedupe keys, and queueing.

A use case queues an effect in its own unit of work (it commits or rolls back with the state
change that causes it); an adapter (the outbox worker's deliveries) carries it out later. The
kinds are the only contract between the two, so they are named here, once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from store.outbox import NewItem
from store.uow import Tx


class Effect(StrEnum):
    POST_CARD = "slack.post_card"  # post a request's card for one stage in that stage's channel
    UPDATE_CARDS = "slack.update_cards"  # re-render every card of a request from its current state
    THREAD = "slack.thread"  # a note in the thread of every card of a request
    DM = "slack.dm"  # a direct message (tenant admins told about a request that failed closed)
    CALLBACK = "callback.deliver"  # POST the decided request to the agent's callback_url
    REFRESH_HOMES = "slack.refresh_homes"  # re-publish the App Home tabs that may show a request
    TELL_REQUESTER = "slack.tell_requester"  # DM the person a decided request was made for (on_behalf_of)


class _Payload(BaseModel):
    # An outbox payload is stored as it was queued: nothing should change it on its way.
    model_config = ConfigDict(frozen=True)


class PostCard(_Payload):
    request_id: str
    stage: int


class UpdateCards(_Payload):
    request_id: str


class Thread(_Payload):
    request_id: str
    text: str


class DirectMessage(_Payload):
    user: str
    text: str
    blocks: list[dict[str, Any]] | None = None  # rendered when queued (a policy change's approval buttons)


class Callback(_Payload):
    request_id: str


class TellRequester(_Payload):
    request_id: str
    user: str  # the request's context.on_behalf_of, a Slack user id


class RefreshHomes(_Payload):
    request_id: str
    users: list[str] | None = None  # None: every member of the request's stages' pools


PAYLOADS: dict[Effect, type[_Payload]] = {
    Effect.POST_CARD: PostCard,
    Effect.UPDATE_CARDS: UpdateCards,
    Effect.THREAD: Thread,
    Effect.DM: DirectMessage,
    Effect.CALLBACK: Callback,
    Effect.REFRESH_HOMES: RefreshHomes,
    Effect.TELL_REQUESTER: TellRequester,
}


def post_key(request_id: str, stage: int) -> str:
    """The dedupe key of a stage's card: a stage is posted once however often it is queued."""
    return f"post:{request_id}:{stage}"


def requester_key(request_id: str) -> str:
    """The dedupe key of telling a request's requester: they are told once per request."""
    return f"requester:{request_id}"


def callback_key(request_id: str) -> str:
    """The dedupe key of a request's callback: an agent is called back once per request."""
    return f"callback:{request_id}"


async def enqueue(
    tx: Tx, tenant: str, kind: Effect, payload: _Payload, now: datetime, dedupe_key: str | None = None
) -> None:
    """Queue one side effect in the caller's unit of work (it commits or rolls back with it)."""
    await tx.outbox.enqueue(tenant, kind.value, payload.model_dump(), now=now, dedupe_key=dedupe_key)


def new_item(tenant: str, kind: Effect, payload: _Payload, dedupe_key: str | None = None) -> NewItem:
    """One side effect to queue with many others (``tx.outbox.enqueue_many``: a batch's effects)."""
    return NewItem(tenant, kind.value, payload.model_dump(), dedupe_key)
