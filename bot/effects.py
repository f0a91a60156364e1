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


class PostCard(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str
    stage: int


class UpdateCards(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str


class Thread(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str
    text: str


class DirectMessage(BaseModel):
    model_config = ConfigDict(frozen=True)
    user: str
    text: str


class Callback(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str
