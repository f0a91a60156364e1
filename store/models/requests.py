"""Requests and what happens to them: their stages, cards, votes, and a question's answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from policy.types import Choice, Mode, Risk, Status
from store.models.base import ID, NAME, Base, StrEnumType


class Request(Base):
    """An agent's request and its decision. ``version`` grows on every transition (compare-and-set)."""

    __tablename__ = "request"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key"),
        Index("ix_request_tenant_status", "tenant", "status"),
        Index("ix_request_tenant_workflow_id", "tenant", "workflow_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    # 'request' (an action to approve) or 'question' (a person asked for an answer, bot.service.questions):
    # questions ride the same stages, deadlines, cards and outbox, and each API reads only its own kind.
    kind: Mapped[str] = mapped_column(String(16), default="request", server_default="request")
    action: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]]
    params_sha256: Mapped[str] = mapped_column(String(64))
    # Once a reviewer edited the params (edit then approve): the agent's, as asked; ``params`` are the edited.
    original_params: Mapped[dict[str, Any] | None]
    edited_by: Mapped[str | None] = mapped_column(String(64))
    # The tenant's policy version in force when the request was recorded (store.policyversions); None
    # for requests older than policy versions, and for questions.
    policy_version: Mapped[int | None] = mapped_column(Integer)
    context: Mapped[dict[str, Any]]
    sensitive: Mapped[list[Any]]
    status: Mapped[Status] = mapped_column(StrEnumType(Status))
    mode: Mapped[Mode] = mapped_column(StrEnumType(Mode))
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(Text)
    undo_operation: Mapped[str | None] = mapped_column(String(200))
    risk: Mapped[Risk | None] = mapped_column(StrEnumType(Risk))
    stage: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[Status | None] = mapped_column(StrEnumType(Status))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RequestStage(Base):
    """A stage opened for a request: which pool, and when it reminds and expires."""

    __tablename__ = "request_stage"

    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pool: Mapped[str] = mapped_column(NAME)
    channel: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime]
    deadline_at: Mapped[datetime] = mapped_column(index=True)
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    # A cross-pool quorum's stage (``require:``): which line it serves (from 0) and that line's approvals.
    # None for a request with one chain. A quorum's lines each have their own current stage: the unfired one.
    line: Mapped[int | None] = mapped_column(Integer, default=None)
    approvals: Mapped[int | None] = mapped_column(Integer, default=None)
    # An edit moved the request to another route: this stage's pool may no longer vote (its deadline is fired).
    superseded_at: Mapped[datetime | None] = mapped_column(default=None)


class Card(Base):
    """Where a request's card was posted, so the bot can update it in place."""

    __tablename__ = "card"
    __table_args__ = (UniqueConstraint("channel", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class Vote(Base):
    """A counted vote: at most one per person per request (the unique constraint is the backstop)."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("request_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(64))
    choice: Mapped[Choice] = mapped_column(StrEnumType(Choice))
    reason: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    for_user: Mapped[str | None] = mapped_column(String(64))  # the delegator, when a delegate voted for them


class QuestionAnswer(Base):
    """The answer to a question (a request of kind 'question'): one per question, the key is the backstop."""

    __tablename__ = "question_answer"

    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    choice: Mapped[int | None] = mapped_column(Integer)  # the index of the choice clicked; None: free text
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
