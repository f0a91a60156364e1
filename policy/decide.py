"""The decision for a request: auto-approve, deny, or review (by whom, how many, how long)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from policy.errors import ConditionError
from policy.loader import CompiledRule, TenantPolicy
from policy.models import DEFAULT_RECEIPT_TTL, ActionRule
from policy.summary import default_summary, render
from policy.types import (
    ActionRequest,
    Mode,
    OnError,
    OnTimeout,
    Outcome,
    QuorumPlan,
    RequestContext,
    Risk,
    StagePlan,
    UnknownAction,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What must happen to a request (before looking at who is available to review it)."""

    tenant: str
    action: str
    outcome: Outcome
    reason: str
    known_action: bool
    stages: tuple[StagePlan, ...]
    approvals: int
    mode: Mode
    on_timeout: OnTimeout
    undo_operation: str | None
    sensitive: tuple[str, ...]
    summary: str
    risk: Risk
    sampled: bool = False  # mode sample: this one is posted for after-the-fact review
    rule: int | None = None  # the `rules:` entry that routed it (from 1), if one did
    # A cross-pool quorum (`require:`): every line must be met; `stages` is then the first line's chain
    # and `approvals` the lines' sum.
    quorum: tuple[QuorumPlan, ...] = ()


def decide(
    policy: TenantPolicy,
    request: ActionRequest,
    *,
    sample_draw: float = 1.0,
    pending_in_workflow: int = 0,
) -> Verdict:
    """Decide what must happen to a request. Pure: no clock, no I/O, no randomness.

    Args:
        policy: the tenant's compiled policy.
        request: the agent's request.
        sample_draw: a number in [0, 1) drawn by the caller; with ``mode: sample`` the request
            is posted for review after the fact when it is below ``sample_rate``.
        pending_in_workflow: undecided async requests of this request's workflow; at
            ``max_pending`` or more, the request is forced to wait (sync).
    """
    manifest = policy.manifest
    defaults = manifest.defaults
    rule = manifest.actions.get(request.action)
    context = request.context.model_dump()
    # Set once the request is known to need a human: a denial or an auto-approval follows no rule.
    routed: CompiledRule | None = None

    def verdict(outcome: Outcome, reason: str, mode: Mode = Mode.SYNC, sampled: bool = False) -> Verdict:
        stages = routed.stages if routed else policy.stages.get(request.action) or policy.stages[""]
        governs = routed.rule if routed else rule
        quorum = routed.quorum if routed else policy.quorum.get(request.action, ())
        return Verdict(
            tenant=manifest.tenant,
            action=request.action,
            outcome=outcome,
            reason=reason,
            known_action=rule is not None,
            stages=stages,
            approvals=governs.required_approvals if governs else 1,
            mode=mode,
            on_timeout=_on_timeout(policy, governs),
            undo_operation=rule.undo_operation if rule else None,
            sensitive=rule.sensitive_paths if rule else (),
            summary=_summary(request, rule),
            risk=rule.risk if rule else Risk.MEDIUM,
            sampled=sampled,
            rule=routed.number if routed else None,
            quorum=quorum,
        )

    if rule is None:
        if defaults.unknown_action is UnknownAction.DENY:
            return verdict(Outcome.DENY, f"'{request.action}' is not in the manifest and unknown_action is deny")
        return verdict(Outcome.REVIEW, f"'{request.action}' is not in the manifest; unknown actions require approval")
    on_error = rule.on_error or defaults.on_error
    # A deny applies whatever else the manifest says about the action.
    deny = policy.deny.get(request.action)
    if deny is not None:
        try:
            denied = deny.evaluate(request.params, context)
        except ConditionError as exc:
            if on_error is OnError.DENY:
                return verdict(Outcome.DENY, f"deny_if: {exc}; on_error is deny")
            denied = False  # the rest of the policy decides (with on_error: approve, as it would anyway)
        if denied:
            return verdict(Outcome.DENY, rule.deny_reason or f"`{deny.source}` is true for these params (deny_if)")
    if not rule.approval_required:
        return verdict(Outcome.AUTO_APPROVE, "approval_required is false for this action")

    reason = "this action always requires approval"
    condition = policy.conditions.get(request.action)
    if condition is not None:
        try:
            holds = condition.evaluate(request.params, context)
        except ConditionError as exc:
            if on_error is OnError.DENY:
                return verdict(Outcome.DENY, f"{exc}; on_error is deny")
            if on_error is OnError.APPROVE:
                return verdict(Outcome.AUTO_APPROVE, f"{exc}; on_error is approve")
            reason = f"{exc}; on_error requires approval"
        else:
            if not holds:
                return verdict(Outcome.AUTO_APPROVE, f"`{condition.source}` is false for these params")
            reason = f"`{condition.source}` is true for these params"
    routed = _route(policy, request.action, request.params, context)
    governs = routed.rule if routed else rule
    if routed is not None:
        reason += f"; rule {routed.number} (`{routed.condition.source}`) routes it"

    mode = governs.effective_mode
    if mode is Mode.SAMPLE:
        rate = governs.sample_rate or 0.0
        sampled = sample_draw < rate
        note = "sampled for review after the fact" if sampled else "not sampled"
        return verdict(Outcome.AUTO_APPROVE, f"{reason}; mode sample ({rate:.0%}): {note}", Mode.SAMPLE, sampled)
    if mode is Mode.ASYNC and rule.max_pending is not None and pending_in_workflow >= rule.max_pending:
        workflow = request.context.workflow_id or "?"
        reason += (
            f"; forced to wait: workflow {workflow} already has {pending_in_workflow} undecided async "
            f"request(s) (max_pending: {rule.max_pending})"
        )
        mode = Mode.SYNC
    return verdict(Outcome.REVIEW, reason, mode)


def on_timeout_for(
    policy: TenantPolicy | None,
    action: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> OnTimeout:
    """What a request becomes when its last deadline passes: its rule's or action's ``on_timeout``, else the
    default. With no policy (a tenant whose manifest was removed) it fails closed: reject."""
    if policy is None:
        return OnTimeout.REJECT
    routed = _route(policy, action, params or {}, context_of(context))
    return _on_timeout(policy, routed.rule if routed else policy.manifest.actions.get(action))


def stages_for(
    policy: TenantPolicy, action: str, params: Mapping[str, Any], context: Mapping[str, Any] | None
) -> tuple[StagePlan, ...]:
    """A request's stage chain, as its rule (if one applies) or its action sets it."""
    routed = _route(policy, action, params, context_of(context))
    return routed.stages if routed else policy.stages.get(action) or policy.stages[""]


def quorum_for(
    policy: TenantPolicy, action: str, params: Mapping[str, Any], context: Mapping[str, Any] | None
) -> tuple[QuorumPlan, ...]:
    """A request's quorum lines (``require:``), as its rule (if one applies) or its action sets them; () for none."""
    routed = _route(policy, action, params, context_of(context))
    return routed.quorum if routed else policy.quorum.get(action, ())


def context_of(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored request's context as conditions see it: every field there, unset ones as null."""
    known = {k: v for k, v in (stored or {}).items() if k in RequestContext.model_fields}
    return RequestContext.model_validate(known).model_dump()


def _route(
    policy: TenantPolicy, action: str, params: Mapping[str, Any], context: Mapping[str, Any]
) -> CompiledRule | None:
    """The first of the action's ``rules:`` whose condition holds; one that cannot be evaluated is passed over."""
    for compiled in policy.rules.get(action, ()):
        try:
            if compiled.condition.evaluate(params, context):
                return compiled
        except ConditionError:
            continue
    return None


def _on_timeout(policy: TenantPolicy, rule: ActionRule | None) -> OnTimeout:
    return (rule.on_timeout if rule else None) or policy.manifest.defaults.on_timeout


def receipt_ttl_for(policy: TenantPolicy | None, action: str) -> timedelta:
    """How long a receipt of a decision on ``action`` is good for: the action's ``receipt_ttl``, else the default."""
    if policy is None:
        return DEFAULT_RECEIPT_TTL
    rule = policy.manifest.actions.get(action)
    return (rule.receipt_ttl if rule else None) or policy.manifest.defaults.receipt_ttl


def _summary(request: ActionRequest, rule: ActionRule | None) -> str:
    if rule is not None and rule.summary:
        return render(rule.summary, request.params, rule.sensitive_paths)
    return default_summary(request.action, rule.description if rule else None, request.context.summary)
