"""The request resource and the agent's request body: the types the use cases and adapters share.

The HTTP API parses bodies into these at the edge and returns them; the OpenAPI document is
generated from them (bot.api.openapi).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policy.types import Choice, Mode, Refusal, Risk, Status

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
    risk: Risk | None = Field(default=None, description="the agent's own estimate; conditions may read it")
    confidence: float | None = Field(default=None, ge=0, le=1, description="the agent's confidence, 0 to 1")
    labels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Annotated[str, Field(max_length=500)]] = (
        Field(
            default_factory=dict,
            max_length=20,
            description="free labels (source, session, team...): shown in Details, readable by conditions",
        )
    )


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
    for_user: str | None = None  # the delegator, when ``user`` voted as their delegate (/hitl delegate)


class ReceiptPayloadOut(BaseModel):
    """What a receipt signs (docs/receipts.md)."""

    model_config = ConfigDict(extra="allow")  # a newer service's fields are signed too: keep them

    request_id: str
    tenant: str
    action: str
    params_sha256: str
    outcome: str = Field(description="approved, auto_approved, rejected, denied or cancelled")
    status: str = Field(description="the request's final status (expired, with outcome what on_timeout decided)")
    deciders: list[str] = Field(description="who decided: the approving (or rejecting) users, or policy/timeout/agent")
    policy_version: str = Field(description="<sha256 of the manifest in force, 16 hex>.<pool configuration version>")
    audit_seq: int = Field(description="seq of the decision's event in the tenant's audit chain")
    issued_at: str
    expires_at: str


class ReceiptOut(BaseModel):
    """An Ed25519-signed decision receipt: sig covers the canonical JSON of every other field."""

    model_config = ConfigDict(extra="allow")

    v: int
    alg: str
    kid: str
    payload: ReceiptPayloadOut
    sig: str


class DecisionOut(BaseModel):
    outcome: Status
    by: str | None = Field(description="Slack user id, or 'policy' / 'timeout' / 'agent'")
    reason: str | None
    at: datetime
    params_sha256: str = Field(description="sha256 of canonical JSON of {action, params}: what was approved")
    params: dict[str, Any] | None = Field(
        default=None,
        description="the params a reviewer approved in place of the agent's (Edit & approve); null when not edited:"
        " run these, not the ones asked for",
    )
    edited: bool = Field(default=False, description="true when a reviewer edited the params before the decision")
    policy_version: int | None = Field(
        default=None,
        description="the tenant's policy version in force when the request was recorded (`countersign policy"
        " versions`); null for a request recorded before policy versions",
    )
    receipt: ReceiptOut | None = Field(
        default=None, description="the signed receipt; null for the moment before the decision's audit event is sealed"
    )


class KeyOut(BaseModel):
    kid: str
    tenant: str
    alg: str = "Ed25519"
    public_key: str = Field(description="base64url of the raw 32-byte Ed25519 public key")
    created_at: datetime
    retired_at: datetime | None
    valid_until: datetime | None = Field(description="when the last receipt this key signed expires; null: in use")


class KeysOut(BaseModel):
    """``GET /v1/keys``: the tenant's receipt keys, the signing one and the retired ones still needed."""

    keys: list[KeyOut]


class QuorumLineOut(BaseModel):
    """One line of a cross-pool quorum (``require:``) and who counts for it so far."""

    pool: str = Field(description="the line's pool now (its first, or where it escalated)")
    approvals: int = Field(description="approvals the line needs")
    approved_by: list[str] = Field(description="approvers counted for this line (one person counts for one line)")


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
    quorum: list[QuorumLineOut] | None = Field(
        default=None, description="a cross-pool quorum's lines (the action's `require:`); null for one chain"
    )


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What a click did: refused (and why), counted, or counted and decided the request."""

    refusal: Refusal | None
    decided: bool = False
    for_user: str | None = None  # counted for the member its voter stood in for (a delegate's click)
