"""The vote tally: is a click admissible, and where do the votes leave the request?"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from policy.types import CastVote, Choice, PoolView, Refusal, Status, TallyResult


def eligible_voters(open_pools: Iterable[PoolView]) -> frozenset[str]:
    """Everyone who may vote: members of every stage opened so far (escalation widens)."""
    voters: frozenset[str] = frozenset()
    for pool in open_pools:
        voters |= pool.members
    return voters


def admit(
    *,
    user: str,
    status: Status,
    open_pools: Iterable[PoolView],
    on_behalf_of: str | None,
    votes: Sequence[CastVote],
    choice: Choice | None = None,
    reason: str | None = None,
) -> Refusal | None:
    """Why a click must not count, or None if it is a valid vote.

    Checked in this order: the request is decided; the voter is the person the agent acts
    for (no self-approval); the voter already voted; the voter is not a member of any open
    stage's pool at click time; a rejection (``choice``) gives no reason. Members marked away
    may still vote: away only stops a pool from being counted on.
    """
    if status is not Status.PENDING:
        return Refusal.ALREADY_DECIDED
    if on_behalf_of is not None and user == on_behalf_of:
        return Refusal.OWN_REQUEST
    if any(v.user == user for v in votes):
        return Refusal.DUPLICATE
    if user not in eligible_voters(open_pools):
        return Refusal.NOT_IN_POOL
    if choice is Choice.REJECT and not (reason or "").strip():
        return Refusal.REASON_REQUIRED
    return None


def tally(*, approvals_required: int, votes: Sequence[CastVote]) -> TallyResult:
    """One rejection rejects; ``approvals_required`` distinct approvers approve."""
    if any(v.choice is Choice.REJECT for v in votes):
        return TallyResult.REJECTED
    approvers = {v.user for v in votes if v.choice is Choice.APPROVE}
    return TallyResult.APPROVED if len(approvers) >= approvals_required else TallyResult.PENDING
