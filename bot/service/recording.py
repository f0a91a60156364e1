"""Recording agents' submissions, many per unit of work (group commit, see :mod:`bot.service.groupcommit`).

A batch costs a few statements whatever its size: one look-up of the batch's idempotency keys,
one count of its workflows' pending requests, one read of each tenant's pools, then one insert
each for requests, stages, audit events and outbox items. A submission the policy refuses or
whose idempotency key was used with another body gets its own error and never fails the
others: those are decided before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.errors import Conflict, InvalidRequest
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import DirectMessage, Effect, PostCard, post_key
from bot.service.models import CreateRequest, RequestOut
from bot.service.transitions import Unit
from policy import (
    ActionRequest,
    Mode,
    Outcome,
    PoolView,
    RequestContext,
    Status,
    Verdict,
    canonical_sha256,
    decide,
    params_sha256,
    route,
    route_quorum,
)
from store import errors as store_errors
from store.audit import NewEvent, request_event
from store.models import Request, RequestStage
from store.outbox import NewItem
from store.recording import NewRequest
from store.stages import NewStage
from store.uow import Tx


@dataclass(frozen=True, slots=True)
class Submission:
    tenant: str
    agent: str
    body: CreateRequest

    @property
    def key(self) -> tuple[str, str] | None:
        """Submissions with one idempotency key must not share a batch (the second replays the first)."""
        return (self.tenant, self.body.idempotency_key) if self.body.idempotency_key else None


Recorded = tuple[RequestOut, bool]  # the resource, and whether this submission created it


@dataclass
class _Writes:
    """Everything a batch writes, gathered before one insert per table."""

    requests: list[NewRequest] = field(default_factory=list)
    stages: list[NewStage] = field(default_factory=list)
    # In the order they happened: an event as it is, or (request #, reason, extra) for a request.created
    # whose request row is not written yet.
    events: list[NewEvent | tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    outbox: list[NewItem] = field(default_factory=list)


async def record(
    unit: Unit, policies: PolicySet, batch: Sequence[Submission], draw: Callable[[], float]
) -> list[Recorded | Exception]:
    """Record ``batch`` in ``unit``; each submission's result or its own error, in order.

    Raises:
        store.errors.BatchConflict: an idempotency key was taken by another writer meanwhile;
            nothing may be committed (write the submissions one by one instead).
    """
    tx, now = unit.tx, unit.now
    tenants = sorted({s.tenant for s in batch})
    known: dict[tuple[str, str], Request] = {}
    pending: dict[tuple[str, str], int] = {}
    for tenant in tenants:
        keys = [s.body.idempotency_key for s in batch if s.tenant == tenant and s.body.idempotency_key]
        known.update({(tenant, k): r for k, r in (await tx.requests.by_idempotency_keys(tenant, keys)).items()})
        flows = sorted({w for s in batch if s.tenant == tenant and (w := s.body.context.workflow_id)})
        pending.update({(tenant, w): n for w, n in (await tx.requests.pending_by_workflow(tenant, flows)).items()})
    pools: dict[str, dict[str, PoolView]] = {}
    writes = _Writes()
    results: list[Recorded | Exception | int] = []  # an int: the index of the request written for it
    for sub in batch:
        body = sub.body
        digest = body_digest(body)
        if (earlier := known.get(sub.key or ("", ""))) is not None:
            try:
                replayed = tx.requests.replay(earlier, digest)
            except store_errors.IdempotencyConflict as exc:
                results.append(Conflict(str(exc)))
                continue
            results.append((await read_resource(tx, replayed), False))
            continue
        policy = policies.get(sub.tenant)
        request = ActionRequest(
            tenant=sub.tenant, action=body.action, params=body.params,
            context=RequestContext(**body.context.model_dump()),
        )  # fmt: skip
        flow = (sub.tenant, body.context.workflow_id or "")
        verdict = decide(policy, request, sample_draw=draw(), pending_in_workflow=pending.get(flow, 0))
        if verdict.outcome is Outcome.DENY and not verdict.known_action:
            # An action this tenant does not have is refused at the door (422, no resource), but audited.
            payload = {"action": body.action, "reason": verdict.reason,
                       "params_sha256": params_sha256(body.action, body.params),
                       "policy_version": policy.version}  # fmt: skip
            writes.events.append(NewEvent(sub.tenant, "request.refused", now, payload, None, sub.agent))
            results.append(InvalidRequest("unknown_action", verdict.reason, "action"))
            continue
        if verdict.outcome is Outcome.REVIEW and verdict.mode is Mode.ASYNC:
            pending[flow] = pending.get(flow, 0) + 1
        if (verdict.outcome is Outcome.REVIEW or verdict.sampled) and sub.tenant not in pools:
            pools[sub.tenant] = await tx.pools.views(sub.tenant)
        new = NewRequest(
            id=tx.new_id(),
            tenant=sub.tenant,
            status=Status.PENDING,
            action=body.action,
            params=body.params,
            context={**stored_context(body), "agent": sub.agent},
            sensitive=verdict.sensitive,
            approvals_required=verdict.approvals,
            on_behalf_of=body.context.on_behalf_of,
            workflow_id=body.context.workflow_id,
            idempotency_key=body.idempotency_key,
            body_sha256=digest,
            callback_url=body.callback_url,
            undo_operation=verdict.undo_operation,
            risk=verdict.risk,
            mode=verdict.mode,
            policy_version=policy.version,
        )
        results.append(len(writes.requests))
        _plan(unit, writes, new, verdict, pools.get(sub.tenant, {}), policy.manifest.admins)
    rows = await tx.requests.create_many(writes.requests, now=now)
    opened = await tx.stages.open_stages(writes.stages, now=now)
    await tx.audit.append_many(
        [e if isinstance(e, NewEvent) else _created(rows[e[0]], *e[1:], unit) for e in writes.events]
    )
    await tx.outbox.enqueue_many(writes.outbox, now=now)
    by_request: dict[str, list[RequestStage]] = {}
    for stage in opened:
        by_request.setdefault(stage.request_id, []).append(stage)
    done: list[Recorded | Exception] = []
    for result in results:
        if not isinstance(result, int):
            done.append(result)
            continue
        row = rows[result]
        if row.status.is_final:
            unit.count(lambda m, row=row: m.final(row.tenant, row.action, row.status.value))  # type: ignore[misc]
        # A new request has no votes yet, and its stages are the ones just opened.
        done.append((render.resource(row, [], by_request.get(row.id, [])), True))
    return done


def _created(row: Request, reason: str, extra: dict[str, Any], unit: Unit) -> NewEvent:
    payload = {
        "reason": reason, "mode": row.mode.value, "approvals_required": row.approvals_required,
        "policy_version": row.policy_version, **extra,
    }  # fmt: skip
    agent = row.context.get("agent")
    return request_event(row, "request.created", now=unit.now, sensitive=row.sensitive, actor=agent, extra=payload)


def _plan(
    unit: Unit,
    writes: _Writes,
    new: NewRequest,
    verdict: Verdict,
    pools: dict[str, PoolView],
    admins: Sequence[str],
) -> None:
    """What recording ``new`` writes: its row, first stage, audit event and effects (nothing yet written)."""
    now, n = unit.now, len(writes.requests)
    request_id = new.id or ""
    card = NewItem(new.tenant, Effect.POST_CARD, PostCard(request_id=request_id, stage=0).model_dump(),
                   post_key(request_id, 0))  # fmt: skip
    if verdict.outcome is not Outcome.REVIEW:
        status = Status.AUTO_APPROVED if verdict.outcome is Outcome.AUTO_APPROVE else Status.DENIED
        writes.requests.append(replace(new, status=status, decided_by="policy", decision_reason=verdict.reason))
        writes.events.append((n, verdict.reason, {"sampled": verdict.sampled}))
        pool = pools.get(verdict.stages[0].pool) if verdict.sampled and verdict.stages else None
        if pool is not None and pool.channel:
            # Posted for review after the fact (mode sample): a stage with no deadline to fire.
            writes.stages.append(NewStage(request_id, 0, pool.name, pool.channel, now, fired_at=now))
            writes.outbox.append(card)
        return
    if verdict.quorum:
        _plan_quorum(unit, writes, new, verdict, pools, admins)
        return
    plan = route(verdict.stages, verdict.approvals, pools, new.on_behalf_of)
    if plan.fails_closed:
        _fail_closed(writes, new, verdict, plan.explain() or "no pool configured", admins)
        return
    writes.requests.append(new)
    first = plan.stages[0]
    remind_at = now + first.remind_after if first.remind_after else None
    writes.stages.append(NewStage(request_id, 0, first.pool, pools[first.pool].channel, now + first.timeout, remind_at))
    skipped = [f"{s.pool}: {s.why}" for s in plan.skipped]
    writes.events.append((n, verdict.reason, {"stages": [s.pool for s in plan.stages], "skipped": skipped}))
    writes.outbox.append(card)


def _fail_closed(writes: _Writes, new: NewRequest, verdict: Verdict, why: str, admins: Sequence[str]) -> None:
    """No pool can serve the request: it is rejected without review, and the tenant's admins are told."""
    reason = f"no reviewer pool can serve this request: {why}"
    writes.events.append((len(writes.requests), verdict.reason, {}))
    writes.requests.append(replace(new, status=Status.REJECTED, decided_by="policy", decision_reason=reason))
    text = f":warning: A `{new.action}` request for *{new.tenant}* was rejected without review: {reason}"
    writes.outbox.extend(NewItem(new.tenant, Effect.DM, DirectMessage(user=a, text=text).model_dump()) for a in admins)


def _plan_quorum(
    unit: Unit,
    writes: _Writes,
    new: NewRequest,
    verdict: Verdict,
    pools: dict[str, PoolView],
    admins: Sequence[str],
) -> None:
    """A cross-pool quorum (``require:``): every line opens at once, on its first pool that can serve, each
    with its own card; a line no pool can serve (or lines distinct people cannot meet) fails it closed."""
    now, n = unit.now, len(writes.requests)
    request_id = new.id or ""
    plan = route_quorum(verdict.quorum, pools, new.on_behalf_of)
    if plan.fails_closed:
        _fail_closed(writes, new, verdict, plan.explain(), admins)
        return
    writes.requests.append(replace(new, stage=len(plan.lines) - 1))
    skipped: list[str] = []
    for index, (line, routed) in enumerate(plan.lines):
        first = routed.stages[0]
        remind_at = now + first.remind_after if first.remind_after else None
        channel = pools[first.pool].channel
        writes.stages.append(
            NewStage(request_id, index, first.pool, channel, now + first.timeout, remind_at,
                     line=line.line, approvals=line.approvals)
        )  # fmt: skip
        writes.outbox.append(
            NewItem(new.tenant, Effect.POST_CARD, PostCard(request_id=request_id, stage=index).model_dump(),
                    post_key(request_id, index))
        )  # fmt: skip
        skipped += [f"{s.pool}: {s.why}" for s in routed.skipped]
    quorum = [{"pool": r.stages[0].pool, "approvals": line.approvals} for line, r in plan.lines]
    writes.events.append((n, verdict.reason, {"quorum": quorum, "skipped": skipped}))


async def read_resource(tx: Tx, row: Request) -> RequestOut:
    """The request resource as the agent sees it, read in the caller's unit of work."""
    stages = await tx.stages.stages(row.id)
    pools = await tx.pools.views(row.tenant) if any(s.line is not None for s in stages) else None
    return render.resource(row, await tx.votes.votes(row.id), stages, pools)


# Context fields added after requests were first stored: left out of the digest while unset, so that
# replaying a request made before they existed still matches the digest stored with it.
_LATER_CONTEXT = ("risk", "confidence", "labels")


def body_digest(body: CreateRequest) -> str:
    """What an idempotency key is bound to: the body without its key."""
    dumped = body.model_dump(exclude={"idempotency_key"})
    context = dumped["context"]
    for name in _LATER_CONTEXT:
        if context.get(name) in (None, {}):
            context.pop(name, None)
    return canonical_sha256(dumped)


def stored_context(body: CreateRequest) -> dict[str, Any]:
    context = body.context.model_dump(mode="json", exclude_none=True)
    if not context.get("labels"):
        context.pop("labels", None)
    return context
