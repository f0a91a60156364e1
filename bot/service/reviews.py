"""Reviewers' side of the use cases: a click on a card, who may vote, what a card's details show. No Slack.

A vote is one unit of work under the request's row lock, so concurrent clicks on one request are
judged one after another: the vote, its audit event, the tally and (when it decides) the
decision with everything it causes commit together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks
from bot.blocks import Details
from bot.clock import Clock
from bot.errors import Forbidden, NotFound
from bot.logs import log_context
from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import Effect, Thread, UpdateCards, enqueue, refresh_homes
from bot.service.models import VoteOutcome
from bot.service.transitions import Transitions
from policy import CastVote, Choice, PoolView, Refusal, Status, TallyResult, admit, tally
from store import errors as store_errors
from store.audit import append_system
from store.models import Request, RequestStage
from store.uow import Tx, uow

log = logging.getLogger(__name__)


def open_pools(stages: Sequence[RequestStage], current: int, views: dict[str, PoolView]) -> list[PoolView]:
    """The pools whose members may vote now: every stage opened so far (escalation widens, never narrows)."""
    return [views[s.pool] for s in stages if s.index <= current and s.pool in views]


async def admissibility(tx: Tx, row: Request, user: str) -> tuple[Refusal | None, list[CastVote], list[RequestStage]]:
    """Why ``user``'s click on ``row`` must not count (None: it counts), the votes cast so far, the stages.

    A decided request is refused before anything is read: the clicks that pile up after a
    decision should not hold the row lock for reads of votes, stages and pools.
    """
    if row.status is not Status.PENDING:
        return admit(user=user, status=row.status, open_pools=[], on_behalf_of=None, votes=[]), [], []
    votes = await tx.votes.cast_votes(row.id)
    stages = list(await tx.stages.stages(row.id))
    pools = open_pools(stages, row.stage, await tx.pools.views(row.tenant))
    refusal = admit(user=user, status=row.status, open_pools=pools, on_behalf_of=row.on_behalf_of, votes=votes)
    return refusal, votes, stages


class Reviews:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        transitions: Transitions,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.transitions = transitions

    async def vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        """Record a click; refused clicks are audited too. Raises NotFound for unknown requests."""
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            return await self._vote(ref=ref, user=user, choice=choice, reason=reason)

    async def _vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        async with self.transitions.unit(self.clock.now()) as unit:
            tx, now = unit.tx, unit.now
            try:
                row = await tx.requests.get_for_update(ref.tenant, ref.request_id)
            except store_errors.NotFound as exc:
                raise NotFound(f"no request '{ref.request_id}'") from exc
            refusal, votes, stages = await admissibility(tx, row, user)
            if refusal is None:
                try:
                    await tx.votes.add_vote(row.id, user, choice, stage=row.stage, now=now, reason=reason)
                except store_errors.DuplicateVote:
                    refusal = Refusal.DUPLICATE
            if refusal is not None:
                refused = {"refusal": refusal.value, "choice": choice.value}
                await tx.audit.append(
                    row.tenant, "click.refused", now=now, request_id=row.id, actor=user, payload=refused
                )
                unit.count(lambda m: m.refused(refusal.value))
                return VoteOutcome(refusal)
            payload: dict[str, Any] = {"choice": choice.value, "reason": reason, "stage": row.stage}
            await tx.audit.append(row.tenant, "vote.cast", now=now, request_id=row.id, actor=user, payload=payload)
            votes.append(CastVote(user=user, choice=choice, at=now))
            result = tally(approvals_required=row.approvals_required, votes=votes)
            approvers = len({v.user for v in votes if v.choice is Choice.APPROVE})
            note = blocks.vote_note(user, choice, reason, approvers, row.approvals_required)
            await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note), now)
            if result is TallyResult.PENDING:
                await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
                # Every reviewer's App Home shows this request's approvals (and the voter's queue lost it);
                # a decision refreshes them through its own effects.
                await refresh_homes(tx, row.tenant, row.id, now)
                return VoteOutcome(None, False)
            outcome = Status.APPROVED if result is TallyResult.APPROVED else Status.REJECTED
            stage = render.stage_at(stages, row.stage)
            await self.transitions.decide_by_votes(
                unit, row, outcome=outcome, by=user, reason=reason, pool=stage.pool if stage else ""
            )
            return VoteOutcome(None, True)

    async def refusal_for(self, *, ref: CardRef, user: str) -> Refusal | None:
        """Would this person's vote be refused right now? (checked before opening the reject modal)."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await self._get(tx, ref)
            refusal, _, _ = await admissibility(tx, row, user)
            return refusal

    async def summary(self, *, ref: CardRef) -> str:
        """The request's one-line summary."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await self._get(tx, ref)
            return render.summary(row, self.policies.tenants.get(row.tenant))

    async def details(self, *, ref: CardRef, user: str) -> Details:
        """The card's full details and audit trail, for a member of the tenant's pools or an admin."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await self._get(tx, ref)
            policy = self.policies.tenants.get(row.tenant)
            pools = await tx.pools.views(row.tenant)
            members = set().union(*(p.members for p in pools.values())) if pools else set()
            if user not in members and not (policy and user in policy.manifest.admins):
                raise Forbidden(f"Only members of {row.tenant}'s reviewer pools can see this request's details.")
            votes, stages = await tx.votes.votes(row.id), await tx.stages.stages(row.id)
            card = render.card(row, votes, stages, policy, for_stage=row.stage)
            records = await tx.audit.for_request(row.tenant, row.id)
            context = {k: v for k, v in row.context.items() if k != "agent"}
            return Details(card=card, context=context, trail=render.trail(records))

    async def audit_refused_slack_request(self, *, reason: str, detail: dict[str, Any]) -> None:
        """Audit Slack requests that were not acted on (bad signature, unknown action...).

        No tenant vouches for a refused request (its claims are unverified), so it goes to the
        system chain. The caller aggregates (bot.slack.refusals): ``detail["count"]`` refusals
        per event, so a flood costs a few writes a minute, not one per request.
        """
        log.warning("refused Slack request: %s %s", reason, detail)
        payload = {"reason": reason, **detail}
        async with self.transitions.unit(self.clock.now()) as unit:
            await append_system(unit.tx.session, "slack.refused", now=unit.now, payload=payload)
            unit.count(lambda m: m.slack_refused(reason, int(detail.get("count", 1))))

    @staticmethod
    async def _get(tx: Tx, ref: CardRef) -> Request:
        row = await tx.requests.get(ref.tenant, ref.request_id)
        if row is None:
            raise NotFound("this request no longer exists")
        return row
