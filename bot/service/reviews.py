"""Reviewers' side of the use cases: a click on a card, who may vote, what a card's details show. No Slack.

A vote is counted under the request's row lock, so concurrent clicks on one request are judged one
after another: the vote, its audit event, the tally and (when it decides) the decision with
everything it causes commit together or not at all. Clicks on different requests that arrive
together share that unit of work (:mod:`bot.service.ballots`).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.errors import Forbidden, NotFound
from bot.logs import log_context
from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.reviewblocks import Details
from bot.service import render
from bot.service.admission import admissibility
from bot.service.ballots import Ballots, Click
from bot.service.models import VoteOutcome
from bot.service.transitions import Transitions
from policy import Choice, Refusal
from store.audit import append_system
from store.models import Request
from store.uow import Tx, uow

log = logging.getLogger(__name__)


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
        self.ballots = Ballots(transitions=transitions, clock=clock)

    async def vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        """Record a click once it commits (with the clicks that came with it); refused clicks are audited
        too. Raises NotFound for unknown requests."""
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            return await self.ballots.cast(
                Click(ref.tenant, ref.request_id, user, choice, reason, params_shown=ref.params)
            )

    async def refusal_for(self, *, ref: CardRef, user: str) -> Refusal | None:
        """Would this person's vote be refused right now? (checked before opening the reject modal)."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await self._get(tx, ref)
            return await admissibility(tx, row, user)

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
            card = render.card(row, votes, stages, policy, for_stage=row.stage, pools=pools)
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
