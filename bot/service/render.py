"""Stored rows into what the API returns and what a card shows. Pure: rows in, values out."""

from __future__ import annotations

from collections.abc import Sequence

from bot.blocks import Card, TrailLine, VoteLine
from bot.service.models import DecisionOut, RequestOut, VoteOut
from policy import TenantPolicy, mask
from policy.summary import default_summary, render
from store.audit import AuditRecord
from store.models import Request, RequestStage, Vote


def stage_at(stages: Sequence[RequestStage], index: int) -> RequestStage | None:
    """The stage numbered ``index``, or None if it never opened."""
    return next((s for s in stages if s.index == index), None)


def summary(request: Request, policy: TenantPolicy | None) -> str:
    """The card's summary line: the manifest's template, else what the agent said, else the action."""
    rule = policy.manifest.actions.get(request.action) if policy else None
    if rule is not None and rule.summary:
        return render(rule.summary, request.params, request.sensitive)
    agent_summary = request.context.get("summary") if isinstance(request.context.get("summary"), str) else None
    return default_summary(request.action, rule.description if rule else None, agent_summary)


def resource(request: Request, votes: Sequence[Vote], stages: Sequence[RequestStage]) -> RequestOut:
    """The request resource (docs/api.md)."""
    stage = stage_at(stages, request.stage)
    decision = None
    if request.status.is_final and request.decided_at is not None:
        decision = DecisionOut(
            outcome=request.outcome or request.status,
            by=request.decided_by,
            reason=request.decision_reason,
            at=request.decided_at,
            params_sha256=request.params_sha256,
        )
    return RequestOut(
        id=request.id,
        tenant=request.tenant,
        action=request.action,
        status=request.status,
        mode=request.mode,
        stage=request.stage if stages else None,
        pool=stage.pool if stage else None,
        approvals_required=request.approvals_required,
        votes=[VoteOut(user=v.user_id, vote=v.choice, reason=v.reason, at=v.at) for v in votes],
        decision=decision,
        undo_operation=request.undo_operation,
        deadline_at=stage.deadline_at if stage and not request.status.is_final else None,
        created_at=request.created_at,
    )


def card(
    request: Request,
    votes: Sequence[Vote],
    stages: Sequence[RequestStage],
    policy: TenantPolicy | None,
    *,
    for_stage: int,
    mentions: Sequence[str] = (),
    approvers: Sequence[str] | None = None,
) -> Card:
    """The card of one stage; a stage the request has moved past shows where it escalated to."""
    stage = stage_at(stages, for_stage)
    later = stage_at(stages, request.stage) if request.stage > for_stage else None
    shown = later or stage
    context = request.context
    return Card(
        tenant=request.tenant,
        request_id=request.id,
        action=request.action,
        summary=summary(request, policy),
        params=mask(request.params, request.sensitive),
        status=request.status,
        approvals_required=request.approvals_required,
        deadline_at=shown.deadline_at if shown else None,
        pool=stage.pool if stage else None,
        requested_by=context.get("agent"),
        on_behalf_of=request.on_behalf_of,
        agent_reason=context.get("reason"),
        links=tuple(context.get("links") or ()),
        votes=[VoteLine(v.user_id, v.choice, v.at, v.reason) for v in votes],
        decided_by=request.decided_by if request.decided_by and request.decided_by[:1] in "UW" else None,
        decided_at=request.decided_at,
        decision_reason=request.decision_reason,
        escalated_to=later.channel if later else None,
        stage=for_stage,
        mentions=tuple(mentions),
        risk=request.risk,
        deadline_pool=shown.pool if shown else None,
        approvers=None if approvers is None else tuple(approvers),
    )


def trail(records: Sequence[AuditRecord]) -> list[TrailLine]:
    """Audit events in words, for the Details modal and ``/hitl show``."""
    lines = []
    for r in records:
        p = r.payload
        if r.kind == "vote.cast":
            text = f"{p.get('choice')}" + (f": {p['reason']}" if p.get("reason") else "")
        elif r.kind == "click.refused":
            text = f"{p.get('choice')} refused ({p.get('refusal')})"
        else:
            text = str(p.get("reason") or p.get("status") or "")
        lines.append(TrailLine(r.at, r.kind, r.actor, text))
    return lines
