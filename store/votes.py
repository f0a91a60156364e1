"""Votes: one per person per request (a unique constraint, not a read-then-write)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import CastVote, Choice
from store._sql import table_of, upsert_insert
from store.errors import DuplicateVote
from store.models import Vote


@dataclass(frozen=True, slots=True)
class NewVote:
    """A vote to count (see :meth:`VoteRepository.add_votes`)."""

    request_id: str
    user: str
    choice: Choice
    stage: int
    reason: str | None = None
    for_user: str | None = None  # the delegator, when ``user`` votes as their delegate


def cast(vote: Vote) -> CastVote:
    """A stored vote as ``policy`` takes it (a delegate's vote keeps whom it was for)."""
    return CastVote(user=vote.user_id, choice=vote.choice, at=vote.at, for_user=vote.for_user)


class VoteRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_vote(
        self, request_id: str, user: str, choice: Choice, *, stage: int, now: datetime, reason: str | None = None
    ) -> Vote:
        """Count one vote. The transaction stays usable when the vote is a duplicate.

        Raises:
            DuplicateVote: the person already voted on this request.
        """
        result = await self._session.execute(
            upsert_insert(self._session, Vote)
            .values(request_id=request_id, user_id=user, choice=choice, reason=reason, stage=stage, at=now)
            .on_conflict_do_nothing(index_elements=["request_id", "user_id"])
            .returning(Vote.id)
        )
        vote_id = result.scalar_one_or_none()
        if vote_id is None:
            raise DuplicateVote(f"{user} already voted on {request_id}")
        vote = await self._session.get(Vote, vote_id)
        assert vote is not None
        return vote

    async def add_votes(self, votes: Sequence[NewVote], *, now: datetime) -> None:
        """Count many votes in one statement (a batch of clicks, judged under their requests' row locks).

        Raises:
            sqlalchemy.exc.IntegrityError: one of them is somebody's second vote on a request (the unique
            constraint is the backstop behind the judging); the caller's unit of work must roll back.
        """
        if votes:
            rows = [
                {"request_id": v.request_id, "user_id": v.user, "choice": v.choice, "reason": v.reason,
                 "stage": v.stage, "at": now, "for_user": v.for_user}
                for v in votes
            ]  # fmt: skip
            await self._session.execute(insert(table_of(Vote)), rows)

    async def votes(self, request_id: str) -> Sequence[Vote]:
        """The request's votes, in the order they were cast."""
        result = await self._session.scalars(select(Vote).where(Vote.request_id == request_id).order_by(Vote.id))
        return result.all()

    async def votes_of(self, request_ids: Sequence[str]) -> dict[str, list[Vote]]:
        """Each of ``request_ids``' votes, in the order they were cast (one query)."""
        found: dict[str, list[Vote]] = {r: [] for r in request_ids}
        if request_ids:
            query = select(Vote).where(Vote.request_id.in_(sorted(set(request_ids)))).order_by(Vote.id)
            for vote in (await self._session.scalars(query)).all():
                found[vote.request_id].append(vote)
        return found

    async def cast_votes(self, request_id: str) -> list[CastVote]:
        """The request's votes as ``policy`` takes them (``admit``, ``tally``)."""
        return [cast(v) for v in await self.votes(request_id)]

    async def voters_of(self, request_ids: Sequence[str]) -> dict[str, set[str]]:
        """Who has voted on each of ``request_ids`` (one query)."""
        found: dict[str, set[str]] = {r: set() for r in request_ids}
        if request_ids:
            query = select(Vote.request_id, Vote.user_id).where(Vote.request_id.in_(sorted(set(request_ids))))
            for request_id, user in (await self._session.execute(query)).all():
                found[request_id].add(user)
        return found
