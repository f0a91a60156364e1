"""A rule's stage chain: reviewer_pool -> fallback -> escalate_to, each with its timeout and reminder."""

from __future__ import annotations

from datetime import timedelta

from policy.models import ActionRule, Defaults
from policy.types import QuorumPlan, StagePlan


def stage_chain(rule: ActionRule | None, defaults: Defaults) -> tuple[StagePlan, ...]:
    """The stages of an action (an unknown action uses the default pool)."""
    timeout = (rule.timeout if rule else None) or defaults.timeout
    remind_at = rule.remind_at if rule and rule.remind_at is not None else defaults.remind_at
    remind_after = _remind_after(timeout, remind_at)
    pools = rule.chain(defaults.default_pool) if rule else ([defaults.default_pool] if defaults.default_pool else [])
    return tuple(StagePlan(index=i, pool=p, timeout=timeout, remind_after=remind_after) for i, p in enumerate(pools))


def quorum_lines(rule: ActionRule | None, defaults: Defaults) -> tuple[QuorumPlan, ...]:
    """The lines of an action's ``require:`` (none without it), each with its stage chain."""
    if rule is None or not rule.require:
        return ()
    remind_at = rule.remind_at if rule.remind_at is not None else defaults.remind_at
    lines = []
    for n, line in enumerate(rule.require):
        timeout = line.timeout or rule.timeout or defaults.timeout
        remind_after = _remind_after(timeout, remind_at)
        stages = tuple(
            StagePlan(index=i, pool=p, timeout=timeout, remind_after=remind_after) for i, p in enumerate(line.chain())
        )
        lines.append(QuorumPlan(line=n, approvals=line.approvals, stages=stages))
    return tuple(lines)


def _remind_after(timeout: timedelta, remind_at: float | timedelta | None) -> timedelta | None:
    if remind_at is None:
        return None
    if isinstance(remind_at, timedelta):
        return remind_at if remind_at < timeout else None
    return timeout * remind_at
