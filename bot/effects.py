"""Side effects that go through the outbox: their kinds and typed payloads."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Effect(StrEnum):
    POST_CARD = "slack.post_card"  # post a request's card for one stage in that stage's channel
    UPDATE_CARDS = "slack.update_cards"  # re-render every card of a request from its current state
    THREAD = "slack.thread"  # a note in the thread of every card of a request
    DM = "slack.dm"  # a direct message (tenant admins told about a request that failed closed)
    CALLBACK = "callback.deliver"  # POST the decided request to the agent's callback_url


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


class Callback(_Payload):
    request_id: str
