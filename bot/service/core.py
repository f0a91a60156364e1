"""The use cases: agents ask, reviewers click, requests get decided. No Slack, no HTTP here.

Each use case is one unit of work: the state change, its audit events and the side effects
it causes (outbox rows) commit together or not at all. After the commit, long polls waiting
on the request are woken and the outbox worker is nudged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks
from bot.blocks import Details
from bot.callbacks import callback_url_problem
from bot.clock import Clock
from bot.errors import Conflict, Forbidden, NotFound
from bot.logs import log_context
from bot.metrics import Metrics
from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import DirectMessage, Effect, PostCard, Thread, UpdateCards, enqueue, post_key, refresh_homes
from bot.service.models import CreateRequest, RequestOut, VoteOutcome
from bot.service.transitions import enqueue_decided
from bot.waiters import DecisionBus
from policy import (
    ActionRequest,
    CastVote,
    Choice,
    Outcome,
    Refusal,
    RequestContext,
    Status,
    TallyResult,
    TenantPolicy,
    Verdict,
    admit,
    canonical_sha256,
    decide,
    params_sha256,
    route,
    tally,
)
from store import errors as store_errors
from store.audit import append_system
from store.models import Request, RequestStage
from store.requests import NewRequest
from store.uow import Tx, uow

log = logging.getLogger(__name__)


class InvalidRequest(Exception):
    """An agent's request the policy or the tenant's settings refuse (HTTP 422)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass
class Service:
    sessionmaker: async_sessionmaker[AsyncSession]
    policies: PolicySet
    clock: Clock
    bus: DecisionBus = field(default_factory=DecisionBus)
    draw: Callable[[], float] = random.random
    wake: Callable[[], None] = lambda: None  # nudges the outbox worker after a commit
    rearm: Callable[[datetime], None] = lambda at: None  # a stage opened with a deadline or reminder at ``at``
    metrics: Metrics | None = None

    # -- agents ---------------------------------------------------------------------------

    async def submit(self, tenant: str, agent: str, body: CreateRequest) -> tuple[RequestOut, bool]:
        """Record an agent's request and decide what happens to it. Returns (resource, created).

        Raises:
            InvalidRequest: unknown tenant manifest, callback URL not allowed.
            Conflict: idempotency key reused with another body.
        """
        policy = self.policies.get(tenant)
        hosts = policy.manifest.callbacks.allowed_hosts
        if body.callback_url and (problem := callback_url_problem(body.callback_url, hosts)):
            raise InvalidRequest("callback_not_allowed", problem, "callback_url")
        now = self.clock.now()
        request = ActionRequest(
            tenant=tenant, action=body.action, params=body.params, context=RequestContext(**body.context.model_dump())
        )
        resource: RequestOut | None = None
        created = queued = False
        due: datetime | None = None
        try:
            async with uow(self.sessionmaker) as tx:
                pending = 0
                if body.context.workflow_id:
                    pending = await tx.requests.count_pending(tenant, workflow_id=body.context.workflow_id)
                verdict = decide(policy, request, sample_draw=self.draw(), pending_in_workflow=pending)
                if verdict.outcome is Outcome.DENY and not verdict.known_action:
                    # An action this tenant does not have is refused at the door (422, no resource), but audited.
                    await tx.audit.append(
                        tenant, "request.refused", now=now, actor=agent,
                        payload={"action": body.action, "reason": verdict.reason,
                                 "params_sha256": params_sha256(body.action, body.params)},
                    )  # fmt: skip
                else:
                    resource, created = await self._record(tx, policy, tenant, agent, body, verdict, now)
                queued, due = tx.outbox.enqueued > 0, tx.requests.earliest_opened
        except store_errors.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        if resource is None:
            raise InvalidRequest("unknown_action", verdict.reason, "action")
        if self.metrics is not None and created and resource.status is not Status.PENDING:
            self.metrics.final(tenant, body.action, resource.status.value)
        if queued:
            self.wake()
        if due is not None:
            self.rearm(due)
        return resource, created

    async def get(self, tenant: str, request_id: str) -> RequestOut:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(tenant, request_id)
            if row is None:
                raise NotFound(f"no request '{request_id}'")
            return await self._resource(tx, row)

    async def wait(self, tenant: str, request_id: str, seconds: float) -> RequestOut:
        """The request once decided, or as it is after ``seconds``."""
        return await self.bus.wait(
            request_id, lambda: self.get(tenant, request_id), lambda r: r.status is not Status.PENDING, seconds
        )

    async def cancel(self, tenant: str, request_id: str) -> RequestOut:
        """The agent withdraws a pending request. Raises Conflict if it is already decided."""
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            row = await self._locked(tx, tenant, request_id)
            if row.status.is_final:
                raise Conflict(f"request '{request_id}' is already {row.status.value}")
            await tx.requests.decide(
                row.id, expected_version=row.version, outcome=Status.CANCELLED, now=now, by="agent"
            )
            row = await tx.requests.get_or_raise(tenant, request_id)
            await tx.audit.append(tenant, "request.cancelled", now=now, request_id=row.id, actor="agent", payload={})
            await self._decided_effects(tx, row, now, note=":no_entry_sign: The agent withdrew this request.")
            resource = await self._resource(tx, row)
        if self.metrics is not None:
            self.metrics.final(tenant, row.action, Status.CANCELLED.value)
        self.bus.notify(request_id)
        self.wake()
        return resource

    # -- reviewers ------------------------------------------------------------------------

    async def vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            return await self._vote(ref=ref, user=user, choice=choice, reason=reason)

    async def _vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        now = self.clock.now()
        decided = False
        async with uow(self.sessionmaker) as tx:
            # Row-locked: concurrent clicks on one request are judged one after another.
            row = await self._locked(tx, ref.tenant, ref.request_id)
            refusal, votes = await self._admit(tx, row, user)
            if refusal is None:
                try:
                    await tx.requests.add_vote(row.id, user, choice, stage=row.stage, now=now, reason=reason)
                except store_errors.DuplicateVote:
                    refusal = Refusal.DUPLICATE
            if refusal is not None:
                refused = {"refusal": refusal.value, "choice": choice.value}
                await tx.audit.append(
                    row.tenant, "click.refused", now=now, request_id=row.id, actor=user, payload=refused
                )
                if self.metrics is not None:
                    self.metrics.refused(refusal.value)
                return VoteOutcome(refusal)
            payload: dict[str, Any] = {"choice": choice.value, "reason": reason, "stage": row.stage}
            await tx.audit.append(row.tenant, "vote.cast", now=now, request_id=row.id, actor=user, payload=payload)
            votes.append(CastVote(user=user, choice=choice, at=now))
            result = tally(approvals_required=row.approvals_required, votes=votes)
            note = blocks.vote_note(user, choice, reason, _approvers(votes), row.approvals_required)
            await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note), now)
            if result is TallyResult.PENDING:
                await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
            else:
                outcome = Status.APPROVED if result is TallyResult.APPROVED else Status.REJECTED
                if not await tx.requests.decide(
                    row.id, expected_version=row.version, outcome=outcome, now=now, by=user, reason=reason
                ):
                    # The row lock makes this unreachable; if it ever happens, nothing of this click commits.
                    raise Conflict("this request changed while your vote was being counted; please try again")
                row = await tx.requests.get_or_raise(row.tenant, row.id)
                await tx.audit.append(
                    row.tenant, "request.decided", now=now, request_id=row.id, actor=user,
                    payload={"status": outcome.value, "reason": reason},
                )  # fmt: skip
                await self._decided_effects(tx, row, now)
                decided = True
                if self.metrics is not None:
                    stage = render.stage_at(await tx.requests.stages(row.id), row.stage)
                    pool = stage.pool if stage else ""
                    seconds = (now - row.created_at).total_seconds()
                    self.metrics.decided(row.tenant, row.action, outcome.value, pool, seconds)
            if not decided:
                # Every reviewer's App Home shows this request's approvals (and the voter's queue lost it);
                # a decision refreshes them through its own effects.
                await refresh_homes(tx, row.tenant, row.id, now)
        if decided:
            self.bus.notify(ref.request_id)
        self.wake()
        return VoteOutcome(None, decided)

    async def refusal_for(self, *, ref: CardRef, user: str) -> Refusal | None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(ref.tenant, ref.request_id)
            if row is None:
                raise NotFound("this request no longer exists")
            refusal, _ = await self._admit(tx, row, user)
            return refusal

    async def summary(self, *, ref: CardRef) -> str:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(ref.tenant, ref.request_id)
            if row is None:
                raise NotFound("this request no longer exists")
            return render.summary(row, self.policies.tenants.get(row.tenant))

    async def details(self, *, ref: CardRef, user: str) -> Details:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(ref.tenant, ref.request_id)
            if row is None:
                raise NotFound("this request no longer exists")
            policy = self.policies.tenants.get(row.tenant)
            pools = await tx.pools.views(row.tenant)
            members = set().union(*(p.members for p in pools.values())) if pools else set()
            if user not in members and not (policy and user in policy.manifest.admins):
                raise Forbidden(f"Only members of {row.tenant}'s reviewer pools can see this request's details.")
            votes, stages = await tx.requests.votes(row.id), await tx.requests.stages(row.id)
            card = render.card(row, votes, stages, policy, for_stage=row.stage)
            records = await tx.audit.for_request(row.tenant, row.id)
            context = {k: v for k, v in row.context.items() if k != "agent"}
            return Details(card=card, context=context, trail=render.trail(records))

    async def audit_refused_slack_request(self, *, reason: str, detail: dict[str, Any]) -> None:
        # No tenant vouches for a refused request (its claims are unverified), so it goes to the
        # system chain. The caller aggregates (bot.slack.refusals): ``detail["count"]`` refusals
        # per event, so a flood costs a few writes a minute, not one per request.
        log.warning("refused Slack request: %s %s", reason, detail)
        payload = {"reason": reason, **detail}
        async with uow(self.sessionmaker) as tx:
            await append_system(tx.session, "slack.refused", now=self.clock.now(), payload=payload)
        if self.metrics is not None:
            self.metrics.slack_refused(reason, int(detail.get("count", 1)))

    # -- helpers --------------------------------------------------------------------------

    async def _record(
        self,
        tx: Tx,
        policy: TenantPolicy,
        tenant: str,
        agent: str,
        body: CreateRequest,
        verdict: Verdict,
        now: datetime,
    ) -> tuple[RequestOut, bool]:
        new = NewRequest(
            tenant=tenant,
            status=Status.PENDING,
            action=body.action,
            params=body.params,
            context={**body.context.model_dump(exclude_none=True), "agent": agent},
            sensitive=verdict.sensitive,
            approvals_required=verdict.approvals,
            on_behalf_of=body.context.on_behalf_of,
            workflow_id=body.context.workflow_id,
            idempotency_key=body.idempotency_key,
            body_sha256=_body_sha(body),
            callback_url=body.callback_url,
            undo_operation=verdict.undo_operation,
            risk=verdict.risk,
            mode=verdict.mode,
        )
        if verdict.outcome is Outcome.REVIEW:
            row, stages = await self._review(tx, policy, new, verdict, now)
        else:
            row, stages = await self._decided_at_once(tx, new, verdict, now)
        if stages is None:  # an idempotent replay: the request as it stands now
            return await self._resource(tx, row), False
        # A new request has no votes yet, and its stages are the ones just opened.
        return render.resource(row, [], stages), True

    async def _review(
        self, tx: Tx, policy: TenantPolicy, new: NewRequest, verdict: Verdict, now: datetime
    ) -> tuple[Request, list[RequestStage] | None]:
        """Open the first stage that can serve, or fail closed when none can.

        Returns the request and the stages it opened; None for an idempotent replay.
        """
        pools = await tx.pools.views(new.tenant)
        plan = route(verdict.stages, verdict.approvals, pools, new.on_behalf_of)
        if plan.fails_closed:
            reason = f"no reviewer pool can serve this request: {plan.explain() or 'no pool configured'}"
            rejected = replace(new, status=Status.REJECTED, decided_by="policy", decision_reason=reason)
            row, created = await tx.requests.create(rejected, now=now)
            if not created:
                return row, None
            await self._created(tx, row, verdict.reason, now)
            await self._tell_admins(tx, policy, row, reason, now)
            return row, []
        row, created = await tx.requests.create(new, now=now)
        if not created:
            return row, None
        first = plan.stages[0]
        remind_at = now + first.remind_after if first.remind_after else None
        channel = pools[first.pool].channel
        deadline_at = now + first.timeout
        stage = await tx.requests.open_stage(
            row.id, 0, pool=first.pool, channel=channel, now=now, deadline_at=deadline_at, remind_at=remind_at
        )
        skipped = [f"{s.pool}: {s.why}" for s in plan.skipped]
        await self._created(tx, row, verdict.reason, now, stages=[s.pool for s in plan.stages], skipped=skipped)
        await enqueue(tx, row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=0), now, post_key(row.id, 0))
        return row, [stage]

    async def _decided_at_once(
        self, tx: Tx, new: NewRequest, verdict: Verdict, now: datetime
    ) -> tuple[Request, list[RequestStage] | None]:
        """Auto-approved or denied by the policy (a sampled one is also posted for review after the fact)."""
        status = Status.AUTO_APPROVED if verdict.outcome is Outcome.AUTO_APPROVE else Status.DENIED
        decided = replace(new, status=status, decided_by="policy", decision_reason=verdict.reason)
        row, created = await tx.requests.create(decided, now=now)
        if not created:
            return row, None
        await self._created(tx, row, verdict.reason, now, sampled=verdict.sampled)
        if verdict.sampled and verdict.stages and (stage := await self._sample(tx, row, verdict.stages[0].pool, now)):
            return row, [stage]
        return row, []

    async def _locked(self, tx: Tx, tenant: str, request_id: str) -> Request:
        try:
            return await tx.requests.get_for_update(tenant, request_id)
        except store_errors.NotFound as exc:
            raise NotFound(f"no request '{request_id}'") from exc

    async def _admit(self, tx: Tx, row: Request, user: str) -> tuple[Refusal | None, list[CastVote]]:
        """Why ``user``'s click on ``row`` must not count (None: it counts), and the votes cast so far.

        A decided request is refused before anything is read: the clicks that pile up after a
        decision should not hold the row lock for reads of votes, stages and pools.
        """
        if row.status is not Status.PENDING:
            return admit(user=user, status=row.status, open_pools=[], on_behalf_of=None, votes=[]), []
        votes = await tx.requests.cast_votes(row.id)
        stages = await tx.requests.stages(row.id)
        pools = await tx.pools.views(row.tenant)
        open_pools = [pools[s.pool] for s in stages if s.index <= row.stage and s.pool in pools]
        refusal = admit(user=user, status=row.status, open_pools=open_pools, on_behalf_of=row.on_behalf_of, votes=votes)
        return refusal, votes

    async def _resource(self, tx: Tx, row: Request) -> RequestOut:
        return render.resource(row, await tx.requests.votes(row.id), await tx.requests.stages(row.id))

    async def _created(self, tx: Tx, row: Request, reason: str, now: datetime, **extra: Any) -> None:
        payload = {"reason": reason, "mode": row.mode.value, "approvals_required": row.approvals_required, **extra}
        await tx.audit.append_request_event(
            row, "request.created", now=now, sensitive=row.sensitive, actor=row.context.get("agent"), extra=payload
        )

    async def _decided_effects(self, tx: Tx, row: Request, now: datetime, note: str | None = None) -> None:
        text = note or blocks.outcome_line(render.card(row, [], [], None, for_stage=row.stage))
        await enqueue_decided(tx, row, now, text)

    async def _tell_admins(self, tx: Tx, policy: TenantPolicy, row: Request, reason: str, now: datetime) -> None:
        text = f":warning: A `{row.action}` request for *{row.tenant}* was rejected without review: {reason}"
        for admin in policy.manifest.admins:
            await enqueue(tx, row.tenant, Effect.DM, DirectMessage(user=admin, text=text), now)

    async def _sample(self, tx: Tx, row: Request, pool: str, now: datetime) -> RequestStage | None:
        view = (await tx.pools.views(row.tenant)).get(pool)
        if view is None or not view.channel:
            return None
        at = row.created_at
        stage = await tx.requests.open_stage(row.id, 0, pool=pool, channel=view.channel, now=now, deadline_at=at)
        await tx.requests.fire_stage(row.id, 0, now)  # a sample has no deadline to fire
        await enqueue(tx, row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=0), now, post_key(row.id, 0))
        return stage


def _approvers(votes: list[CastVote]) -> int:
    return len({v.user for v in votes if v.choice is Choice.APPROVE})


def _body_sha(body: CreateRequest) -> str:
    return canonical_sha256(body.model_dump(exclude={"idempotency_key"}))
