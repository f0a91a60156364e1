"""Stored rows into what the API returns and what a card shows. Pure: rows in, values out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.blocks import Card, CardEdit, QuorumProgress, VoteLine, edit_value
from bot.reviewblocks import TrailLine
from bot.service.models import DecisionOut, QuorumLineOut, RequestOut, VoteOut
from policy import (
    CastVote,
    PoolView,
    Status,
    TallyResult,
    TenantPolicy,
    approvers_of,
    mask,
    match_quorum,
    reveal,
    tally_quorum,
)
from policy.summary import default_summary, render
from store.audit import AuditRecord
from store.models import Request, RequestStage, Vote

# Audit event kinds of reveal on demand (bot.service.reveals): who saw which field, never the value.
REVEALED = "sensitive.revealed"
REVEAL_REFUSED = "sensitive.reveal_refused"
# Audit event kinds of edit then approve (bot.service.edits): both versions of the params, and the diff.
EDITED = "request.edited"
EDIT_REFUSED = "edit.refused"


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
        if stage.line is not None and stage.superseded_at is None:  # an edit's new route replaced a superseded one
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
    return [CastVote(user=v.user_id, choice=v.choice, at=v.at, for_user=v.for_user) for v in votes]


def revealable(request: Request, policy: TenantPolicy | None) -> tuple[str, ...]:
    """The request's masked params an eligible reviewer may reveal, as the manifest in force says."""
    rule = policy.manifest.actions.get(request.action) if policy else None
    return reveal.revealable(request.params, request.sensitive, rule)


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
            # Only an edited request's: the agent runs what was approved, not what it asked for.
            params=request.params if request.original_params is not None else None,
            edited=request.original_params is not None,
            policy_version=request.policy_version,
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
        votes=[VoteOut(user=v.user_id, vote=v.choice, reason=v.reason, at=v.at, for_user=v.for_user) for v in votes],
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
    edit = card_edit(request, stages, stage)
    if edit is not None and edit.closed:
        later = None  # not an escalation: votes on this card no longer count
    context = request.context
    return Card(
        tenant=request.tenant,
        request_id=request.id,
        action=request.action,
        summary=summary(request, policy),
        params=mask(request.params, request.sensitive),
        params_sha256=request.params_sha256,
        status=request.status,
        approvals_required=request.approvals_required,
        deadline_at=stage.deadline_at if stage else None,
        pool=stage.pool if stage else None,
        requested_by=context.get("agent"),
        on_behalf_of=request.on_behalf_of,
        agent_reason=context.get("reason"),
        links=tuple(context.get("links") or ()),
        votes=[VoteLine(v.user_id, v.choice, v.at, v.reason, v.for_user) for v in votes],
        decided_by=request.decided_by if request.decided_by and request.decided_by[:1] in "UW" else None,
        decided_for=next((v.for_user for v in votes if v.user_id == request.decided_by and v.for_user), None),
        decided_at=request.decided_at,
        decision_reason=request.decision_reason,
        escalated_to=later.channel if later else None,
        stage=for_stage,
        mentions=tuple(mentions),
        risk=request.risk,
        escalated_deadline_at=later.deadline_at if later else None,
        approvers=None if approvers is None else tuple(approvers),
        quorum=progress,
        revealable=revealable(request, policy) if request.status is Status.PENDING else (),
        editable=request.status is Status.PENDING and bool(editable(request, policy)),
        edit=edit,
    )


def editable(request: Request, policy: TenantPolicy | None) -> tuple[str, ...]:
    """The params a reviewer may edit before approving (the manifest in force's ``editable``)."""
    rule = policy.manifest.actions.get(request.action) if policy else None
    return tuple(rule.editable) if rule is not None and request.kind == "request" else ()


def _leaves(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def edit_changes(request: Request) -> list[tuple[str, Any, Any]]:
    """What edits changed, agent's params → current ones, sensitive values masked: (path, before, after)."""
    if request.original_params is None:
        return []
    return param_diff(mask(request.original_params, request.sensitive), mask(request.params, request.sensitive))


def param_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The dotted paths whose value differs: (path, before, after), None for a value absent on one side."""
    old, new = _leaves(before), _leaves(after)
    paths = list(old) + [p for p in new if p not in old]
    return [(p, old.get(p), new.get(p)) for p in paths if old.get(p) != new.get(p)]


def card_edit(request: Request, stages: Sequence[RequestStage], stage: RequestStage | None) -> CardEdit | None:
    """What the card of ``stage`` says of the request's edit: the diff, and whether the edit closed this stage
    (moved to another route) or opened it."""
    if request.original_params is None:
        return None
    closed = stage is not None and stage.superseded_at is not None
    current = stage_at(stages, request.stage)
    replaced = [s.index for s in stages if s.superseded_at is not None]
    arrived = False
    if stage is not None and not closed and replaced and stage.index > max(replaced):
        after = [s.index for s in stages if s.index > max(replaced) and s.line == stage.line]
        arrived = stage.index == min(after)
    return CardEdit(
        by=request.edited_by,
        changes=edit_changes(request),
        closed=closed,
        moved_to=current.channel if closed and current is not None else None,
        arrived=arrived,
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
        elif r.kind == REVEALED:
            text = f"`{p.get('field')}`"
        elif r.kind == REVEAL_REFUSED:
            text = f"reveal refused ({p.get('refusal')})"
        elif r.kind in (EDITED, EDIT_REFUSED):
            diff = "; ".join(
                f"{c.get('path')} {edit_value(c.get('before'))} → {edit_value(c.get('after'))}"
                for c in p.get("changes") or []
                if isinstance(c, dict)
            )
            text = diff + (f" ({p['route']})" if p.get("route") else "") + (f": {p['why']}" if p.get("why") else "")
        elif r.kind.startswith("policy."):
            text = policy_event_text(r.kind, p)
        else:
            text = str(p.get("reason") or p.get("status") or "")
        lines.append(TrailLine(r.at, r.kind, r.actor, text))
    return lines


def policy_event_text(kind: str, p: Mapping[str, Any]) -> str:
    """A policy change or version in words: which change, what it does, the version it made or why not."""
    if kind == "policy.version":
        return f"version {p.get('policy_version')} ({p.get('source') or 'file'})" + (
            f": {p['note']}" if p.get("note") else ""
        )
    what = str(p.get("summary") or p.get("what") or "")
    change = f"#{p['change']} " if p.get("change") is not None and not what.startswith("change #") else ""
    text = change + what
    if kind == "policy.change.approved" and p.get("applied_version") is not None:
        text += f" → version {p['applied_version']}"
    if p.get("why"):
        text += f": {p['why']}"
    return text.strip()
