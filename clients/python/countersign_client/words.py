"""What a model reads when a gated call was not allowed: the same words from every framework adapter."""

from __future__ import annotations

from countersign_client.models import ApprovalRequest

_VERDICTS = {"denied": "Denied", "rejected": "Rejected", "expired": "Expired", "cancelled": "Cancelled"}


def refusal(request: ApprovalRequest, tool: str) -> str:
    """Who said no, why, and that nothing ran."""
    decision = request.decision
    verdict = _VERDICTS.get(request.status, "Rejected")
    by = decision.by if decision is not None and decision.by else "Countersign"
    reason = decision.reason if decision is not None and decision.reason else "no reason given"
    return f"{verdict} by {by}: {reason} ({tool} was not run; Countersign request {request.id})"
