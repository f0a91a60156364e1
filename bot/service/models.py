"""The request resource and the agent's request body: the types the use cases and adapters share.

The HTTP API parses bodies into these at the edge and returns them; the OpenAPI document is
generated from them (bot.api.openapi).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policy.types import Choice, Mode, Refusal, Status

MAX_DEPTH = 12
MAX_NODES = 5000


def _check_shape(value: Any) -> None:
    """Refuse params nested deeper than MAX_DEPTH or with more than MAX_NODES values."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"params are nested deeper than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise ValueError(f"params hold more than {MAX_NODES} values")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=2000)
    links: list[str] = Field(default_factory=list, max_length=10)
    on_behalf_of: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,20}$", description="Slack user id")
    workflow_id: str | None = Field(default=None, max_length=200)


class CreateRequest(BaseModel):
    """``POST /v1/requests``."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    context: ContextIn = Field(default_factory=ContextIn)
    callback_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")

    @field_validator("params")
    @classmethod
    def _shape(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_shape(value)
        return value


class VoteOut(BaseModel):
    user: str
    vote: Choice
    reason: str | None
    at: datetime


class DecisionOut(BaseModel):
    outcome: Status
    by: str | None = Field(description="Slack user id, or 'policy' / 'timeout' / 'agent'")
    reason: str | None
    at: datetime
    params_sha256: str = Field(description="sha256 of canonical JSON of {action, params}: what was approved")


class RequestOut(BaseModel):
    """A request resource, as returned by every endpoint and POSTed to async callbacks."""

    id: str
    tenant: str
    action: str
    status: Status
    mode: Mode
    stage: int | None
    pool: str | None
    approvals_required: int
    votes: list[VoteOut]
    decision: DecisionOut | None
    undo_operation: str | None
    deadline_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What a click did: refused (and why), counted, or counted and decided the request."""

    refusal: Refusal | None
    decided: bool = False
