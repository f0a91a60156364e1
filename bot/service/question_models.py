"""The question resource and the agent's question body (``POST /v1/questions``): a human as a tool.

A question is stored as a request of kind 'question' (so deadlines, cards, the outbox, long polls and
the audit treat it as they treat requests); these are the shapes the agent sends and reads.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.service.models import ContextIn
from policy.types import Mode

MAX_CHOICES = 10
MAX_CHOICE = 75  # Slack's limit on a button's text
MAX_ANSWER = 2000
MAX_QUESTION = 2000
ACTION = "question"  # what a question's request row names as its action (no manifest action is involved)

QuestionStatus = Literal["pending", "answered", "expired", "cancelled"]


class AskQuestion(BaseModel):
    """``POST /v1/questions``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    choices: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_CHOICE)]], Field(min_length=1, max_length=10)]
        | None
    ) = Field(default=None, description="1 to 10 answers offered as buttons; without them, free text only")
    context: ContextIn = Field(default_factory=ContextIn)
    pool: str | None = Field(
        default=None, min_length=1, max_length=64, description="the pool asked; default: defaults.default_pool"
    )
    mode: Literal[Mode.SYNC, Mode.ASYNC] = Field(
        default=Mode.SYNC, description="async: the answer goes to callback_url too, and Prefer: wait is not held"
    )
    timeout_seconds: int | None = Field(
        default=None, ge=60, le=7 * 24 * 3600, description="how long the pool has; default: defaults.timeout"
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    callback_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(not c.strip() for c in value):
            raise ValueError("a choice is blank")
        if len({c.strip() for c in value}) != len(value):
            raise ValueError("two choices are the same")
        return value


class AnswerOut(BaseModel):
    text: str = Field(description="the answer: the chosen choice's text, or what the person wrote")
    choice: int | None = Field(description="the index of the chosen choice; null for a written answer")
    by: str = Field(description="Slack user id of who answered")
    at: datetime


class QuestionOut(BaseModel):
    """A question resource, as returned by the question endpoints and POSTed to async callbacks."""

    id: str
    kind: Literal["question"] = "question"
    tenant: str
    question: str
    choices: list[str] | None
    status: QuestionStatus
    mode: Mode
    pool: str | None
    answer: AnswerOut | None
    deadline_at: datetime | None = Field(description="when the pool's time runs out; null once closed")
    closed_at: datetime | None = Field(description="when it was answered, expired or cancelled")
    created_at: datetime


class AnswerRefusal(StrEnum):
    """Why a click or a reply on a question's card was not taken as its answer."""

    ALREADY_ANSWERED = "already_answered"
    CLOSED = "closed"  # expired or withdrawn before anyone answered
    NOT_IN_POOL = "not_in_pool"
    OWN_QUESTION = "own_question"  # the question is asked on this person's behalf
    BAD_CHOICE = "bad_choice"  # a button of a choice the question does not have
