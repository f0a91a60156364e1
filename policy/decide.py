"""The decision for a request: auto-approve, deny, or review (by whom, how many, how long)."""

from __future__ import annotations

from dataclasses import dataclass

from policy.errors import ConditionError
from policy.loader import TenantPolicy
from policy.models import ActionRule
from policy.summary import default_summary, render
from policy.types import ActionRequest, Mode, OnError, OnTimeout, Outcome, Risk, StagePlan, UnknownAction


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
    stages = policy.stages.get(request.action) or policy.stages[""]

    def verdict(outcome: Outcome, reason: str, mode: Mode = Mode.SYNC, sampled: bool = False) -> Verdict:
        return Verdict(
            tenant=manifest.tenant,
            action=request.action,
            outcome=outcome,
            reason=reason,
            known_action=rule is not None,
            stages=stages,
            approvals=rule.required_approvals if rule else 1,
            mode=mode,
            on_timeout=on_timeout_for(policy, request.action),
            undo_operation=rule.undo_operation if rule else None,
            sensitive=tuple(rule.sensitive) if rule else (),
            summary=_summary(request, rule),
            risk=rule.risk if rule else Risk.MEDIUM,
            sampled=sampled,
        )

    if rule is None:
        if defaults.unknown_action is UnknownAction.DENY:
            return verdict(Outcome.DENY, f"'{request.action}' is not in the manifest and unknown_action is deny")
        return verdict(Outcome.REVIEW, f"'{request.action}' is not in the manifest; unknown actions require approval")
    if not rule.approval_required:
        return verdict(Outcome.AUTO_APPROVE, "approval_required is false for this action")

    reason = "this action always requires approval"
    condition = policy.conditions.get(request.action)
    if condition is not None:
        try:
            holds = condition.evaluate(request.params, request.context.model_dump())
        except ConditionError as exc:
            on_error = rule.on_error or defaults.on_error
            if on_error is OnError.DENY:
                return verdict(Outcome.DENY, f"{exc}; on_error is deny")
            if on_error is OnError.APPROVE:
                return verdict(Outcome.AUTO_APPROVE, f"{exc}; on_error is approve")
            reason = f"{exc}; on_error requires approval"
        else:
            if not holds:
                return verdict(Outcome.AUTO_APPROVE, f"`{condition.source}` is false for these params")
            reason = f"`{condition.source}` is true for these params"

    mode = rule.effective_mode
    if mode is Mode.SAMPLE:
        rate = rule.sample_rate or 0.0
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


def on_timeout_for(policy: TenantPolicy | None, action: str) -> OnTimeout:
    """What a request of ``action`` becomes when its last deadline passes: the action's rule, else the default.

    With no policy (a tenant whose manifest was removed) it fails closed: reject.
    """
    if policy is None:
        return OnTimeout.REJECT
    rule = policy.manifest.actions.get(action)
    return (rule.on_timeout if rule else None) or policy.manifest.defaults.on_timeout


def _summary(request: ActionRequest, rule: ActionRule | None) -> str:
    if rule is not None and rule.summary:
        return render(rule.summary, request.params, rule.sensitive)
    return default_summary(request.action, rule.description if rule else None, request.context.summary)
