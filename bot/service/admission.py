"""Who may vote on a request now: the one judgement behind a click, a Reject modal and the Home queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policy import CastVote, Choice, PoolView, Refusal, Status, acting_for, admit, eligible_voters
from store.models import Request, RequestStage, Vote
from store.uow import Tx
from store.votes import cast


def open_pools(stages: Sequence[RequestStage], current: int, views: Mapping[str, PoolView]) -> list[PoolView]:
    """The pools whose members may vote now: every stage opened so far (escalation widens, never narrows),
    but for those of a route an edit replaced (``superseded_at``)."""
    return [views[s.pool] for s in stages if s.index <= current and s.pool in views and s.superseded_at is None]


def judge(
    row: Request,
    user: str,
    votes: Sequence[CastVote],
    stages: Sequence[RequestStage],
    views: Mapping[str, PoolView],
    *,
    status: Status | None = None,
    choice: Choice | None = None,
    reason: str | None = None,
) -> Refusal | None:
    """Why ``user``'s click on ``row`` must not count (None: it counts), from what was read of it.

    ``status`` overrides the row's when a batch has already decided the request in memory; with
    ``choice`` (a click, not a look before opening the Reject modal) a rejection needs a ``reason``.
    """
    status = row.status if status is None else status
    pools = open_pools(stages, row.stage, views) if status is Status.PENDING else []
    return admit(
        user=user,
        status=status,
        open_pools=pools,
        on_behalf_of=row.on_behalf_of,
        votes=list(votes),
        choice=choice,
        reason=reason,
    )


def who_can_vote(
    row: Request, votes: Sequence[Vote], stages: Sequence[RequestStage], views: Mapping[str, PoolView]
) -> set[str]:
    """Whom admission would let vote now (away members included): not who voted, nor a delegate whose
    delegator voted (or the reverse), nor whom the request acts for, nor their delegate."""
    pools = open_pools(stages, row.stage, views)
    cast_votes = [cast(v) for v in votes]
    status = Status.PENDING
    return {
        user
        for user in eligible_voters(pools)
        if admit(user=user, status=status, open_pools=pools, on_behalf_of=row.on_behalf_of, votes=cast_votes) is None
    }


def voting_for(row: Request, user: str, stages: Sequence[RequestStage], views: Mapping[str, PoolView]) -> str | None:
    """Whom an admitted vote by ``user`` counts for: None as themselves, else the member of an open
    stage's pool they stand in for as a delegate (the vote is recorded and shown as theirs "for" them)."""
    return acting_for(user, open_pools(stages, row.stage, views))


async def admissibility(tx: Tx, row: Request, user: str) -> Refusal | None:
    """:func:`judge`, reading what it needs; a decided request is refused before anything is read."""
    if row.status is not Status.PENDING:
        return judge(row, user, [], [], {})
    votes = await tx.votes.cast_votes(row.id)
    stages = list(await tx.stages.stages(row.id))
    return judge(row, user, votes, stages, await tx.pools.views(row.tenant))
