"""Clicks counted in batches: the votes that arrive together share one unit of work (group commit).

A click is judged and counted under its request's row lock, as before; what changed is that the
clicks waiting while a batch commits are counted together in the next one, in a handful of
statements whatever their number (lock the requests, read their votes, stages and pools, insert
the votes, the audit events and the outbox items, decide the requests the tallies decided). On
SQLite, whose one writer serves every tenant, that is what keeps a click's commit from queueing
behind a hundred others; on PostgreSQL each batch locks only its own requests' rows.

Clicks on one request share a batch too: they are judged in arrival order, each seeing the votes
counted before it in the batch, and once one decides the request the rest are refused as already
decided, exactly as if each had committed alone. (A hundred reviewers clicking one card at once is
the burst a card draws; one batch each would queue the last of them past Slack's 3 s.) A batch
that fails is counted again one click at a time, so one click's error never fails another's. Each
click is answered only after the commit that counted it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot import blocks
from bot.clock import Clock
from bot.errors import NotFound
from bot.metrics import Metrics
from bot.service import render
from bot.service.admission import judge, voting_for
from bot.service.effects import Effect, RefreshHomes, Thread, UpdateCards, new_item
from bot.service.groupcommit import GroupCommit
from bot.service.models import VoteOutcome
from bot.service.transitions import Transitions, Unit, VotedOut
from policy import CastVote, Choice, PoolView, Refusal, Status, TallyResult, tally
from store.audit import NewEvent
from store.models import Request, RequestStage, Vote
from store.outbox import NewItem
from store.votes import NewVote
from store.votes import cast as stored_vote


@dataclass(frozen=True, slots=True)
class Click:
    """A reviewer's Approve or Reject on a request's card."""

    tenant: str
    request_id: str
    user: str
    choice: Choice
    reason: str | None = None
    bulk: bool = False  # one of several approved in one step (App Home); said in its audit events
    params_shown: str | None = None  # the start of the params' digest the clicked card showed (CardRef.params)


@dataclass(frozen=True, slots=True)
class _Reviewed:
    """A counted vote, for the per-reviewer metrics once its batch commits."""

    tenant: str
    pool: str
    user: str
    members: frozenset[str]  # of the tenant's pools: only these get a label of their own
    choice: str
    seconds: float  # since the stage opened (its card was queued)

    def __call__(self, metrics: Metrics) -> None:
        metrics.reviewed(self.tenant, self.pool, self.user, self.members, self.choice, self.seconds)


def _members(views: Mapping[str, PoolView] | None, pool: str) -> frozenset[str]:
    view = (views or {}).get(pool)
    return view.members if view is not None else frozenset()


class Ballots:
    def __init__(self, *, transitions: Transitions, clock: Clock) -> None:
        self.transitions = transitions
        self.clock = clock
        self._writer: GroupCommit[Click, VoteOutcome] = GroupCommit(self._flush)

    async def cast(self, click: Click) -> VoteOutcome:
        """Count ``click`` (or refuse it, audited) once it commits. Raises NotFound for an unknown request."""
        return await self._writer.submit(click)

    async def _flush(self, clicks: Sequence[Click]) -> Sequence[VoteOutcome | Exception]:
        try:
            async with self.transitions.unit(self.clock.now()) as unit:
                return await self._count(unit, clicks)
        except Exception as exc:
            if len(clicks) == 1:
                return [exc]
        # Something in the batch failed, so none of it was written: each click alone, with its own error.
        return [await self._one(click) for click in clicks]

    async def _one(self, click: Click) -> VoteOutcome | Exception:
        try:
            async with self.transitions.unit(self.clock.now()) as unit:
                return (await self._count(unit, [click]))[0]
        except Exception as exc:
            return exc

    async def count_in(self, unit: Unit, clicks: Sequence[Click]) -> list[VoteOutcome | Exception]:
        """Count ``clicks`` in the caller's unit of work (an edit's own approval, with the edit it follows)."""
        return await self._count(unit, clicks)

    async def _count(self, unit: Unit, clicks: Sequence[Click]) -> list[VoteOutcome | Exception]:
        tx, now = unit.tx, unit.now
        locked = await tx.requests.lock_many([c.request_id for c in clicks])
        rows = {c.request_id: row for c in clicks if (row := locked.get(c.request_id)) and row.tenant == c.tenant}
        # A decided request's clicks are refused before anything more is read for them.
        pending = [row.id for row in rows.values() if row.status is Status.PENDING]
        votes, stages = await tx.votes.votes_of(pending), await tx.stages.stages_of(pending)
        views = {t: await tx.pools.views(t) for t in sorted({rows[r].tenant for r in pending})}
        batch = _Batch(now)
        results: list[VoteOutcome | Exception] = []
        for click in clicks:
            row = rows.get(click.request_id)
            if row is None:
                results.append(NotFound(f"no request '{click.request_id}'"))
                continue
            results.append(batch.add(click, row, votes.get(row.id, []), stages.get(row.id, []), views.get(row.tenant)))
        for reviewed in batch.reviewed:
            unit.count(reviewed)
        for refusal in batch.refusals:

            def bump(m: Metrics, refusal: str = refusal) -> None:
                m.refused(refusal)

            unit.count(bump)
        await tx.votes.add_votes(batch.votes, now=now)
        await tx.audit.append_many(batch.events)
        await tx.outbox.enqueue_many(batch.effects, now=now)
        await self.transitions.decide_many_by_votes(unit, batch.decided)
        return results


class _Batch:
    """What a batch of clicks writes, judged one click at a time (pure: no I/O)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.votes: list[NewVote] = []
        self.events: list[NewEvent] = []
        self.effects: list[NewItem] = []
        self.decided: list[VotedOut] = []
        self.refusals: list[str] = []
        self.reviewed: list[_Reviewed] = []
        # What the batch has counted so far, per request: the next click on it is judged against these.
        self._cast: dict[str, list[CastVote]] = {}
        self._settled: dict[str, Status] = {}

    def add(
        self,
        click: Click,
        row: Request,
        votes: Sequence[Vote],
        stages: Sequence[RequestStage],
        views: Mapping[str, PoolView] | None,
    ) -> VoteOutcome:
        now = self.now
        cast = self._cast.setdefault(row.id, [stored_vote(v) for v in votes])
        status = self._settled.get(row.id, row.status)
        refusal = judge(
            row, click.user, cast, stages, views or {}, status=status, choice=click.choice, reason=click.reason
        )
        if refusal is None and click.params_shown and not row.params_sha256.startswith(click.params_shown):
            refusal = Refusal.STALE  # a vote is for the params its voter saw; these were edited since
        if refusal is not None:
            refused: dict[str, object] = {"refusal": refusal.value, "choice": click.choice.value}
            if click.bulk:
                refused["bulk"] = True
            self.events.append(NewEvent(row.tenant, "click.refused", now, refused, row.id, click.user))
            self.refusals.append(refusal.value)
            return VoteOutcome(refusal)
        for_user = voting_for(row, click.user, stages, views or {})  # a delegate's vote is their delegator's
        self.votes.append(NewVote(row.id, click.user, click.choice, row.stage, click.reason, for_user))
        payload: dict[str, object] = {"choice": click.choice.value, "reason": click.reason, "stage": row.stage}
        if click.bulk:
            payload["bulk"] = True
        if for_user:
            payload["for"] = for_user
        self.events.append(NewEvent(row.tenant, "vote.cast", now, payload, row.id, click.user))
        cast.append(CastVote(user=click.user, choice=click.choice, at=now, for_user=for_user))
        stage = render.stage_at(stages, row.stage)
        if stage is not None and stage.line is not None:
            # A cross-pool quorum: the voter's line's stage, the first whose pool has them.
            mine = [s for s in stages if s.fired_at is None and (for_user or click.user) in _members(views, s.pool)]
            stage = mine[0] if mine else stage
        if stage is not None:
            members = frozenset().union(*(pool.members for pool in (views or {}).values()))
            seconds = (now - stage.opened_at).total_seconds()
            self.reviewed.append(_Reviewed(row.tenant, stage.pool, click.user, members, click.choice.value, seconds))
        lines = render.lines_of(stages, views)
        progress: list[blocks.QuorumProgress] = []
        if lines:
            # A cross-pool quorum: each approver counts for one line they are a member of, one person once.
            result = render.quorum_tally(lines, cast)
            filled = render.quorum_filled(lines, cast)
            progress = [
                blocks.QuorumProgress(ln.current.pool, ln.approvals, len(who))
                for ln, who in zip(lines, filled, strict=True)
            ]
        else:
            result = tally(approvals_required=row.approvals_required, votes=cast)
        approvers = len({v.counts_as for v in cast if v.choice is Choice.APPROVE})
        note = blocks.vote_note(
            click.user, click.choice, click.reason, approvers, row.approvals_required, progress, for_user=for_user
        )
        self._effect(row, Effect.THREAD, Thread(request_id=row.id, text=note))
        if result is TallyResult.PENDING:
            self._effect(row, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id))
            # Every reviewer's App Home shows this request's approvals (and the voter's queue lost it); a
            # decision refreshes them through its own effects.
            self._effect(row, Effect.REFRESH_HOMES, RefreshHomes(request_id=row.id))
            return VoteOutcome(None, False, for_user)
        outcome = Status.APPROVED if result is TallyResult.APPROVED else Status.REJECTED
        self._settled[row.id] = outcome
        self.decided.append(VotedOut(row, outcome, click.user, click.reason, stage.pool if stage else "", for_user))
        return VoteOutcome(None, True, for_user)

    def _effect(self, row: Request, kind: Effect, payload: Thread | UpdateCards | RefreshHomes) -> None:
        self.effects.append(new_item(row.tenant, kind, payload))
