"""Agents' side of the use cases: submit a request, read it, wait for it, withdraw it. No Slack, no HTTP.

A submission is one unit of work: the request, its first stage (or its decision, when the policy
decides at once), its audit event and the outbox items it causes commit together or not at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import callback_url_problem
from bot.clock import Clock
from bot.errors import Conflict, NotFound
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import Effect, PostCard, enqueue, post_key
from bot.service.models import CreateRequest, RequestOut
from bot.service.transitions import Transitions, Unit
from policy import (
    ActionRequest,
    Outcome,
    RequestContext,
    Status,
    Verdict,
    canonical_sha256,
    decide,
    params_sha256,
    route,
)
from store import errors as store_errors
from store.models import Request, RequestStage
from store.requests import NewRequest
from store.uow import Tx, uow


class InvalidRequest(Exception):
    """An agent's request the policy or the tenant's settings refuse (HTTP 422)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class Intake:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        transitions: Transitions,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.transitions = transitions
        self.draw = draw

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
        created = False
        try:
            async with self.transitions.unit(now) as unit:
                pending = 0
                if body.context.workflow_id:
                    pending = await unit.tx.requests.count_pending(tenant, workflow_id=body.context.workflow_id)
                verdict = decide(policy, request, sample_draw=self.draw(), pending_in_workflow=pending)
                if verdict.outcome is Outcome.DENY and not verdict.known_action:
                    # An action this tenant does not have is refused at the door (422, no resource), but audited.
                    await unit.tx.audit.append(
                        tenant, "request.refused", now=now, actor=agent,
                        payload={"action": body.action, "reason": verdict.reason,
                                 "params_sha256": params_sha256(body.action, body.params)},
                    )  # fmt: skip
                else:
                    resource, created = await self._record(unit, tenant, agent, body, verdict)
        except store_errors.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        if resource is None:
            raise InvalidRequest("unknown_action", verdict.reason, "action")
        return resource, created

    async def get(self, tenant: str, request_id: str) -> RequestOut:
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(tenant, request_id)
            if row is None:
                raise NotFound(f"no request '{request_id}'")
            return await _resource(tx, row)

    async def wait(self, tenant: str, request_id: str, seconds: float) -> RequestOut:
        """The request once decided, or as it is after ``seconds``."""
        return await self.transitions.signals.decisions.wait(
            request_id, lambda: self.get(tenant, request_id), lambda r: r.status is not Status.PENDING, seconds
        )

    async def cancel(self, tenant: str, request_id: str) -> RequestOut:
        """The agent withdraws a pending request. Raises Conflict if it is already decided."""
        async with self.transitions.unit(self.clock.now()) as unit:
            try:
                row = await unit.tx.requests.get_for_update(tenant, request_id)
            except store_errors.NotFound as exc:
                raise NotFound(f"no request '{request_id}'") from exc
            if row.status.is_final:
                raise Conflict(f"request '{request_id}' is already {row.status.value}")
            row = await self.transitions.cancel(unit, row)
            return await _resource(unit.tx, row)

    # -- recording ------------------------------------------------------------------------

    async def _record(
        self, unit: Unit, tenant: str, agent: str, body: CreateRequest, verdict: Verdict
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
            body_sha256=canonical_sha256(body.model_dump(exclude={"idempotency_key"})),
            callback_url=body.callback_url,
            undo_operation=verdict.undo_operation,
            risk=verdict.risk,
            mode=verdict.mode,
        )
        if verdict.outcome is Outcome.REVIEW:
            row, stages = await self._review(unit, new, verdict)
        else:
            row, stages = await self._decided_at_once(unit, new, verdict)
        if stages is None:  # an idempotent replay: the request as it stands now
            return await _resource(unit.tx, row), False
        if row.status.is_final:
            unit.count(lambda m: m.final(row.tenant, row.action, row.status.value))
        # A new request has no votes yet, and its stages are the ones just opened.
        return render.resource(row, [], stages), True

    async def _review(self, unit: Unit, new: NewRequest, verdict: Verdict) -> tuple[Request, list[RequestStage] | None]:
        """Open the first stage that can serve, or fail closed when none can.

        Returns the request and the stages it opened; None for an idempotent replay.
        """
        tx, now = unit.tx, unit.now
        pools = await tx.pools.views(new.tenant)
        plan = route(verdict.stages, verdict.approvals, pools, new.on_behalf_of)
        if plan.fails_closed:
            reason = f"no reviewer pool can serve this request: {plan.explain() or 'no pool configured'}"
            rejected = replace(new, status=Status.REJECTED, decided_by="policy", decision_reason=reason)
            row, created = await tx.requests.create(rejected, now=now)
            if not created:
                return row, None
            await _created(tx, row, verdict.reason, now)
            text = f":warning: A `{row.action}` request for *{row.tenant}* was rejected without review: {reason}"
            await self.transitions.tell_admins(unit, row.tenant, text)
            return row, []
        row, created = await tx.requests.create(new, now=now)
        if not created:
            return row, None
        first = plan.stages[0]
        remind_at = now + first.remind_after if first.remind_after else None
        stage = await tx.requests.open_stage(
            row.id, 0, pool=first.pool, channel=pools[first.pool].channel, now=now,
            deadline_at=now + first.timeout, remind_at=remind_at,
        )  # fmt: skip
        skipped = [f"{s.pool}: {s.why}" for s in plan.skipped]
        await _created(tx, row, verdict.reason, now, stages=[s.pool for s in plan.stages], skipped=skipped)
        await enqueue(tx, row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=0), now, post_key(row.id, 0))
        return row, [stage]

    async def _decided_at_once(
        self, unit: Unit, new: NewRequest, verdict: Verdict
    ) -> tuple[Request, list[RequestStage] | None]:
        """Auto-approved or denied by the policy (a sampled one is also posted for review after the fact)."""
        tx, now = unit.tx, unit.now
        status = Status.AUTO_APPROVED if verdict.outcome is Outcome.AUTO_APPROVE else Status.DENIED
        decided = replace(new, status=status, decided_by="policy", decision_reason=verdict.reason)
        row, created = await tx.requests.create(decided, now=now)
        if not created:
            return row, None
        await _created(tx, row, verdict.reason, now, sampled=verdict.sampled)
        if verdict.sampled and verdict.stages and (stage := await _sample(tx, row, verdict.stages[0].pool, now)):
            return row, [stage]
        return row, []


async def _resource(tx: Tx, row: Request) -> RequestOut:
    return render.resource(row, await tx.requests.votes(row.id), await tx.requests.stages(row.id))


async def _created(tx: Tx, row: Request, reason: str, now: datetime, **extra: Any) -> None:
    payload = {"reason": reason, "mode": row.mode.value, "approvals_required": row.approvals_required, **extra}
    await tx.audit.append_request_event(
        row, "request.created", now=now, sensitive=row.sensitive, actor=row.context.get("agent"), extra=payload
    )


async def _sample(tx: Tx, row: Request, pool: str, now: datetime) -> RequestStage | None:
    """Post an auto-approved request for review after the fact (mode sample): a stage with nothing to fire."""
    view = (await tx.pools.views(row.tenant)).get(pool)
    if view is None or not view.channel:
        return None
    stage = await tx.requests.open_stage(
        row.id, 0, pool=pool, channel=view.channel, now=now, deadline_at=row.created_at
    )
    await tx.requests.fire_stage(row.id, 0, now)  # a sample has no deadline to fire
    await enqueue(tx, row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=0), now, post_key(row.id, 0))
    return stage
