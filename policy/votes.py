"""The vote tally: is a click admissible, and where do the votes leave the request?"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from policy.types import CastVote, Choice, PoolView, Refusal, Status, TallyResult


def eligible_voters(open_pools: Iterable[PoolView]) -> frozenset[str]:
    """Everyone who may vote: members of every stage opened so far (escalation widens), and the
    delegates standing in for them."""
    voters: frozenset[str] = frozenset()
    for pool in open_pools:
        voters |= pool.voters
    return voters


def acting_for(user: str, open_pools: Iterable[PoolView]) -> str | None:
    """Whom ``user``'s vote counts for: None if they vote as themselves (a member of an open pool, or no
    voter at all), else the member of an open pool they stand in for as a delegate."""
    pools = list(open_pools)
    if any(user in pool.members for pool in pools):
        return None
    return next((who for pool in pools if (who := pool.acting_for(user)) is not None), None)


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
    for, or stands in for them as a delegate (no self-approval); the voter, or the person they
    stand in for, already voted (a delegate and their delegator are one vote); the voter is
    neither a member of an open stage's pool nor a delegate of one at click time; a rejection
    (``choice``) gives no reason. Members marked away may still vote: away only stops a pool
    from being counted on.
    """
    if status is not Status.PENDING:
        return Refusal.ALREADY_DECIDED
    pools = list(open_pools)
    counts_as = acting_for(user, pools) or user
    if on_behalf_of is not None and on_behalf_of in (user, counts_as):
        return Refusal.OWN_REQUEST
    if any(v.user == user or v.counts_as == counts_as for v in votes):
        return Refusal.DUPLICATE
    if user not in eligible_voters(pools):
        return Refusal.NOT_IN_POOL
    if choice is Choice.REJECT and not (reason or "").strip():
        return Refusal.REASON_REQUIRED
    return None


def match_quorum(lines: Sequence[tuple[int, frozenset[str]]], approvers: Sequence[str]) -> list[list[str]]:
    """Approvers assigned to quorum lines so that as many approvals as possible are met, one person once.

    ``lines``: each line's (approvals needed, who counts for it). A maximum bipartite matching of
    approvers to the lines' seats (augmenting paths; lines x approvers is small), approvers taken in
    the order given, so the earliest votes fill the seats where it makes no difference.
    Returns who fills each line, in line order.
    """
    seats = [n for n, (need, _) in enumerate(lines) for _ in range(need)]
    holder: list[str | None] = [None] * len(seats)

    def place(user: str, tried: set[int]) -> bool:
        for seat, line in enumerate(seats):
            if seat in tried or user not in lines[line][1]:
                continue
            tried.add(seat)
            held = holder[seat]
            if held is None or place(held, tried):
                holder[seat] = user
                return True
        return False

    for user in dict.fromkeys(approvers):
        place(user, set())
    filled: list[list[str]] = [[] for _ in lines]
    for seat, held in enumerate(holder):
        if held is not None:
            filled[seats[seat]].append(held)
    return filled


def approvers_of(votes: Sequence[CastVote]) -> list[str]:
    """Who approved, in the order they voted, each once (a delegate's approval is their delegator's)."""
    return list(dict.fromkeys(v.counts_as for v in votes if v.choice is Choice.APPROVE))


def tally_quorum(*, lines: Sequence[tuple[int, frozenset[str]]], votes: Sequence[CastVote]) -> TallyResult:
    """A cross-pool quorum: one rejection rejects; approved once distinct approvers fill every line's
    approvals, each counting only for lines whose pools they are members of (one person counts once)."""
    if any(v.choice is Choice.REJECT for v in votes):
        return TallyResult.REJECTED
    filled = match_quorum(lines, approvers_of(votes))
    done = all(len(f) >= need for f, (need, _) in zip(filled, lines, strict=True))
    return TallyResult.APPROVED if done else TallyResult.PENDING


def tally(*, approvals_required: int, votes: Sequence[CastVote]) -> TallyResult:
    """One rejection rejects; ``approvals_required`` distinct approvers approve (a delegate and the
    person they stand in for are one)."""
    if any(v.choice is Choice.REJECT for v in votes):
        return TallyResult.REJECTED
    approvers = {v.counts_as for v in votes if v.choice is Choice.APPROVE}
    return TallyResult.APPROVED if len(approvers) >= approvals_required else TallyResult.PENDING
