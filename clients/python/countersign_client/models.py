"""Typed views of the service's request resource (parsed once, at the edge of the client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FINAL = frozenset({"auto_approved", "denied", "approved", "rejected", "expired", "cancelled"})
APPROVED = frozenset({"auto_approved", "approved"})


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Vote:
    user: str
    vote: str  # approve | reject
    reason: str | None
    at: datetime | None


@dataclass(frozen=True)
class Decision:
    outcome: str  # approved | rejected | auto_approved | denied | cancelled
    by: str | None  # a Slack user id, or policy / timeout / agent
    reason: str | None
    at: datetime | None
    params_sha256: str | None
    # The params a reviewer approved in place of the agent's, when they edited them (Edit & approve): run
    # these, not the ones asked for; ``params_sha256`` and the receipt cover them.
    params: dict[str, Any] | None = None
    edited: bool = False
    # The tenant's policy version that decided the request (`countersign policy versions`); None from a
    # service older than policy versions.
    policy_version: int | None = None
    # The signed receipt (docs/receipts.md); None until the decision's audit event is sealed.
    # Check it with countersign_client.receipts.verify_receipt.
    receipt: dict[str, Any] | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """A request as the service reports it. ``raw`` keeps the JSON, for fields newer than this client."""

    id: str
    tenant: str
    action: str
    status: str
    mode: str
    stage: int | None
    pool: str | None
    approvals_required: int
    votes: list[Vote]
    decision: Decision | None
    undo_operation: str | None
    deadline_at: datetime | None
    created_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        decision = data.get("decision")
        return cls(
            id=str(data["id"]),
            tenant=str(data.get("tenant", "")),
            action=str(data.get("action", "")),
            status=str(data["status"]),
            mode=str(data.get("mode", "sync")),
            stage=data.get("stage"),
            pool=data.get("pool"),
            approvals_required=int(data.get("approvals_required") or 0),
            votes=[
                Vote(str(v["user"]), str(v["vote"]), v.get("reason"), _when(v.get("at"))) for v in data.get("votes", [])
            ],
            decision=None
            if not decision
            else Decision(
                outcome=str(decision["outcome"]),
                by=decision.get("by"),
                reason=decision.get("reason"),
                at=_when(decision.get("at")),
                params_sha256=decision.get("params_sha256"),
                params=decision.get("params"),
                edited=bool(decision.get("edited", False)),
                policy_version=decision.get("policy_version"),
                receipt=decision.get("receipt"),
            ),
            undo_operation=data.get("undo_operation"),
            deadline_at=_when(data.get("deadline_at")),
            created_at=_when(data.get("created_at")),
            raw=dict(data),
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def approved(self) -> bool:
        """Whether the agent may go ahead: approved, or expired where the manifest's ``on_timeout`` approves."""
        if self.status in APPROVED:
            return True
        return self.status == "expired" and self.decision is not None and self.decision.outcome == "approved"

    @property
    def reason(self) -> str | None:
        return self.decision.reason if self.decision is not None else None


@dataclass(frozen=True)
class Answer:
    """What a person answered: the text (the chosen choice's, or what they wrote), which choice, who, when."""

    text: str
    choice: int | None  # the index of the chosen choice; None for a written answer
    by: str  # a Slack user id
    at: datetime | None


@dataclass(frozen=True)
class Question:
    """A question as the service reports it (``POST /v1/questions``). ``raw`` keeps the JSON."""

    id: str
    tenant: str
    question: str
    choices: list[str] | None
    status: str  # pending | answered | expired | cancelled
    mode: str
    pool: str | None
    answer: Answer | None
    deadline_at: datetime | None
    closed_at: datetime | None
    created_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Question:
        answer = data.get("answer")
        choices = data.get("choices")
        return cls(
            id=str(data["id"]),
            tenant=str(data.get("tenant", "")),
            question=str(data.get("question", "")),
            choices=[str(c) for c in choices] if isinstance(choices, list) else None,
            status=str(data["status"]),
            mode=str(data.get("mode", "sync")),
            pool=data.get("pool"),
            answer=None
            if not answer
            else Answer(str(answer["text"]), answer.get("choice"), str(answer["by"]), _when(answer.get("at"))),
            deadline_at=_when(data.get("deadline_at")),
            closed_at=_when(data.get("closed_at")),
            created_at=_when(data.get("created_at")),
            raw=dict(data),
        )

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def answered(self) -> bool:
        return self.answer is not None
