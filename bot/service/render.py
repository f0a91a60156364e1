"""Stored rows into what the API returns and what a card shows. Pure: rows in, values out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.blocks import Card, QuorumProgress, TrailLine, VoteLine
from bot.service.models import DecisionOut, QuorumLineOut, RequestOut, VoteOut
from policy import CastVote, PoolView, TallyResult, TenantPolicy, approvers_of, mask, match_quorum, tally_quorum
from policy.summary import default_summary, render
from store.audit import AuditRecord
from store.models import Request, RequestStage, Vote


def stage_at(stages: Sequence[RequestStage], index: int) -> RequestStage | None:
    """The stage numbered ``index``, or None if it never opened."""
    return next((s for s in stages if s.index == index), None)


@dataclass(frozen=True, slots=True)
class Line:
    """A cross-pool quorum line as its stages stand: where it is now and who counts for it."""

    line: int
    approvals: int
    current: RequestStage  # its latest stage
    first: int  # the index of its first stage
    members: frozenset[str]  # of every pool the line has opened (escalation widens)


def lines_of(stages: Sequence[RequestStage], pools: Mapping[str, PoolView] | None) -> list[Line]:
    """A request's quorum lines, in order ([] for a request with one chain). Without ``pools`` nobody is
    known to count for any line."""
    by_line: dict[int, list[RequestStage]] = {}
    for stage in sorted(stages, key=lambda s: s.index):
        if stage.line is not None:
            by_line.setdefault(stage.line, []).append(stage)
    lines = []
    for line, opened in sorted(by_line.items()):
        members: frozenset[str] = frozenset()
        for stage in opened:
            view = (pools or {}).get(stage.pool)
            members |= view.members if view is not None else frozenset()
        lines.append(Line(line, opened[-1].approvals or 1, opened[-1], opened[0].index, members))
    return lines


def quorum_filled(lines: Sequence[Line], votes: Sequence[CastVote]) -> list[list[str]]:
    """Who counts for each line: the approvers matched to lines they are members of, one person once."""
    return match_quorum([(ln.approvals, ln.members) for ln in lines], approvers_of(votes))


def quorum_tally(lines: Sequence[Line], votes: Sequence[CastVote]) -> TallyResult:
    return tally_quorum(lines=[(ln.approvals, ln.members) for ln in lines], votes=votes)


def _cast(votes: Sequence[Vote]) -> list[CastVote]:
    return [CastVote(user=v.user_id, choice=v.choice, at=v.at) for v in votes]


def summary(request: Request, policy: TenantPolicy | None) -> str:
    """The card's summary line: the manifest's template, else what the agent said, else the action."""
    rule = policy.manifest.actions.get(request.action) if policy else None
    if rule is not None and rule.summary:
        return render(rule.summary, request.params, request.sensitive)
    agent_summary = request.context.get("summary") if isinstance(request.context.get("summary"), str) else None
    return default_summary(request.action, rule.description if rule else None, agent_summary)


def resource(
    request: Request,
    votes: Sequence[Vote],
    stages: Sequence[RequestStage],
    pools: Mapping[str, PoolView] | None = None,
) -> RequestOut:
    """The request resource (docs/api.md). ``pools`` (the tenant's): who counts for a quorum's lines."""
    stage = stage_at(stages, request.stage)
    lines = lines_of(stages, pools)
    quorum = None
    deadline = stage.deadline_at if stage else None
    if lines:
        # One chain's fields keep a meaning: the first line's pool, the earliest deadline of any line.
        stage = lines[0].current
        deadline = min(ln.current.deadline_at for ln in lines)
        filled = quorum_filled(lines, _cast(votes))
        quorum = [
            QuorumLineOut(pool=ln.current.pool, approvals=ln.approvals, approved_by=who)
            for ln, who in zip(lines, filled, strict=True)
        ]
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
        deadline_at=deadline if stage and not request.status.is_final else None,
        created_at=request.created_at,
        quorum=quorum,
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
    pools: Mapping[str, PoolView] | None = None,
) -> Card:
    """The card of one stage; a stage the request has moved past shows where it escalated to. A cross-pool
    quorum's card (one per line's pool) shows every line's progress (``pools``: who counts for which line)."""
    stage = stage_at(stages, for_stage)
    later = stage_at(stages, request.stage) if request.stage > for_stage else None
    lines = lines_of(stages, pools)
    progress: tuple[QuorumProgress, ...] = ()
    if lines:
        own = next((ln for ln in lines if stage is not None and ln.line == stage.line), None)
        later = own.current if own is not None and own.current.index > for_stage else None
        filled = quorum_filled(lines, _cast(votes))
        progress = tuple(
            QuorumProgress(ln.current.pool, ln.approvals, len(who)) for ln, who in zip(lines, filled, strict=True)
        )
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
        quorum=progress,
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
