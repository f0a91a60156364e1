"""Value types shared by policy, store and bot.

These are the words of the domain. They carry no behaviour that needs I/O,
so ``store`` and ``bot`` can import them freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    """What the policy says must happen to a request when it arrives."""

    AUTO_APPROVE = "auto_approve"
    DENY = "deny"
    REVIEW = "review"


class Status(StrEnum):
    """The life of a request. Every value but ``pending`` is final."""

    AUTO_APPROVED = "auto_approved"
    DENIED = "denied"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ANSWERED = "answered"  # a question (POST /v1/questions), not a request: a person answered it

    @property
    def is_final(self) -> bool:
        return self is not Status.PENDING


class Mode(StrEnum):
    """How the agent learns the decision: it waits (sync), gets a callback (async), or
    goes ahead while a sample is reviewed after the fact (sample)."""

    SYNC = "sync"
    ASYNC = "async"
    SAMPLE = "sample"


class Choice(StrEnum):
    """A reviewer's vote."""

    APPROVE = "approve"
    REJECT = "reject"


class OnTimeout(StrEnum):
    """What the last stage's deadline decides."""

    REJECT = "reject"
    APPROVE = "approve"


class UnknownAction(StrEnum):
    """What happens to an action type the manifest does not name."""

    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class OnError(StrEnum):
    """What happens when a condition cannot be evaluated (a missing field, a type error)."""

    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"
    APPROVE = "approve"


class Risk(StrEnum):
    """How risky an action is; orders reviewers' queues (highest first)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}


class Refusal(StrEnum):
    """Why a click did not count as a vote. Every refusal is audited and explained."""

    NOT_IN_POOL = "not_in_pool"
    OWN_REQUEST = "own_request"
    DUPLICATE = "duplicate"
    ALREADY_DECIDED = "already_decided"
    REASON_REQUIRED = "reason_required"
    STALE = "stale"  # the params changed (a reviewer edited them) after the card or view clicked was drawn


class TallyResult(StrEnum):
    """Where the votes cast so far leave a request."""

    APPROVED = "approved"
    REJECTED = "rejected"
    PENDING = "pending"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequestContext(_Frozen):
    """What the agent says about why it asks (its ``context``)."""

    summary: str | None = None
    reason: str | None = None
    links: list[str] = Field(default_factory=list)
    on_behalf_of: str | None = None
    workflow_id: str | None = None
    risk: Risk | None = None
    confidence: float | None = None
    labels: Mapping[str, str] = Field(default_factory=dict)


class ActionRequest(_Frozen):
    """An agent's request, as the policy sees it."""

    tenant: str
    action: str
    params: Mapping[str, Any] = Field(default_factory=dict)
    context: RequestContext = Field(default_factory=RequestContext)


class StagePlan(_Frozen):
    """One step of the review chain: which pool is asked and for how long."""

    index: int
    pool: str
    timeout: timedelta
    remind_after: timedelta | None


class QuorumPlan(_Frozen):
    """One line of a cross-pool quorum (``require:``): its approvals, from its own pool chain."""

    line: int  # from 0, in manifest order
    approvals: int
    stages: tuple[StagePlan, ...]  # pool -> fallback -> escalate_to

    @property
    def pool(self) -> str:
        return self.stages[0].pool


class PoolView(_Frozen):
    """What the policy needs to know about a pool's current state to judge if it can serve."""

    name: str
    channel: str | None
    members: frozenset[str]
    away: frozenset[str] = frozenset()
    # Delegations in force, (delegator, delegate): the delegator counts as away, the delegate stands in.
    delegates: tuple[tuple[str, str], ...] = ()

    @property
    def stand_ins(self) -> dict[str, str]:
        """Delegator -> delegate, for the delegators who are members of this pool."""
        return {who: by for who, by in self.delegates if who in self.members}

    @property
    def voters(self) -> frozenset[str]:
        """Everyone whose vote counts here: members (away or not) and their delegates."""
        return self.members | frozenset(self.stand_ins.values())

    def acting_for(self, user: str) -> str | None:
        """Whom ``user`` votes for here: None as a member in their own right (or not at all), else the
        member they stand in for (the first by id, if several delegated to them)."""
        if user in self.members:
            return None
        return next((who for who, by in sorted(self.stand_ins.items()) if by == user), None)

    def eligible(self, *, exclude: str | None) -> frozenset[str]:
        """Who could vote now: present members, and delegates standing in for members, but neither the
        person the agent acts for nor a delegate acting for them. A delegator and their delegate are one
        person here (the delegator is away), so the count never doubles."""
        stand_ins = self.stand_ins
        available = self.members - self.away - set(stand_ins)
        available |= {by for who, by in stand_ins.items() if who != exclude}
        return available - {exclude} if exclude else available


class CastVote(_Frozen):
    """A vote already counted on a request."""

    user: str
    choice: Choice
    at: datetime | None = None
    for_user: str | None = None  # the delegator, when ``user`` voted as their delegate

    @property
    def counts_as(self) -> str:
        """The person this vote counts for: a delegate's vote is the delegator's."""
        return self.for_user or self.user
