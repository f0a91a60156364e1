"""Decisions for requests: outcome, reason, chain, mode, summary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from policy import ActionRequest, Mode, OnTimeout, Outcome, RequestContext, decide
from tests.policy.helpers import load_ok

MANIFEST = """
tenant: acme
defaults: {timeout: 10m, default_pool: p1, on_timeout: reject, remind_at: 50%}
callbacks: {allowed_hosts: [h]}
pools:
  p1: {channel: C1, members: [U1, U2]}
  p2: {channel: C2, members: [U3, U4]}
  p3: {channel: C3, members: [U5, U6]}
actions:
  refund:
    if: amount > 500
    reviewer_pool: p1
    fallback: p2
    escalate_to: p3
    timeout: 5m
    sensitive: [card, customer.email]
    summary: "Refund ${amount} to {customer.name} on {card} ({customer.email}, {missing})"
    on_timeout: approve
    undo_operation: reverse_refund
    remind_at: 1m
  typed:
    if: amount > 5
    on_error: deny
  lenient:
    if: amount > 5
    on_error: approve
  strict_default:
    if: amount > 5
  always: {reviewer_pool: p2, require_two_reviewers: true, risk: critical}
  never: {approval_required: false}
  later: {blocking: false, max_pending: 2}
  sampled: {mode: sample, sample_rate: 0.25}
  by_context: {if: 'context.reason == ""'}
  by_params_map: {if: 'params.amount > 1'}
"""


def decide_(action: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
    context = kw.pop("context", {})
    policy = load_ok(MANIFEST)
    request = ActionRequest(tenant="acme", action=action, params=params or {}, context=RequestContext(**context))
    return decide(policy, request, **kw)


@pytest.mark.parametrize(
    ("action", "params", "kw", "outcome", "reason"),
    [
        ("refund", {"amount": 620}, {}, Outcome.REVIEW, "`amount > 500` is true for these params"),
        ("refund", {"amount": 20}, {}, Outcome.AUTO_APPROVE, "`amount > 500` is false for these params"),
        ("refund", {}, {}, Outcome.REVIEW, "needs field 'amount', which the request lacks; on_error requires approval"),
        ("strict_default", {"amount": "lots"}, {}, Outcome.REVIEW, "could not be evaluated"),
        ("typed", {}, {}, Outcome.DENY, "on_error is deny"),
        ("lenient", {}, {}, Outcome.AUTO_APPROVE, "on_error is approve"),
        ("always", {}, {}, Outcome.REVIEW, "this action always requires approval"),
        ("never", {}, {}, Outcome.AUTO_APPROVE, "approval_required is false"),
        ("nope", {}, {}, Outcome.REVIEW, "'nope' is not in the manifest; unknown actions require approval"),
        ("sampled", {}, {"sample_draw": 0.1}, Outcome.AUTO_APPROVE, "sampled for review after the fact"),
        ("sampled", {}, {"sample_draw": 0.9}, Outcome.AUTO_APPROVE, "not sampled"),
        ("by_context", {}, {"context": {"reason": ""}}, Outcome.REVIEW, "is true"),
        ("by_context", {}, {"context": {"reason": "because"}}, Outcome.AUTO_APPROVE, "is false"),
        ("by_params_map", {"amount": 2}, {}, Outcome.REVIEW, "is true"),
    ],
)
def test_outcome_and_reason(
    action: str, params: dict[str, Any], kw: dict[str, Any], outcome: Outcome, reason: str
) -> None:
    verdict = decide_(action, params, **kw)
    assert verdict.outcome is outcome
    assert reason in verdict.reason


def test_unknown_action_denied_when_manifest_says_so() -> None:
    policy = load_ok("tenant: t\ndefaults: {unknown_action: deny}\n")
    verdict = decide(policy, ActionRequest(tenant="t", action="rm_rf"))
    assert (verdict.outcome, verdict.known_action) == (Outcome.DENY, False)
    assert "not in the manifest and unknown_action is deny" in verdict.reason


def test_review_carries_chain_deadlines_mode_undo_and_sensitive() -> None:
    verdict = decide_("refund", {"amount": 620, "card": "4111", "customer": {"name": "Ana", "email": "a@x"}})
    assert [(s.index, s.pool, s.timeout) for s in verdict.stages] == [
        (0, "p1", timedelta(minutes=5)),
        (1, "p2", timedelta(minutes=5)),
        (2, "p3", timedelta(minutes=5)),
    ]
    assert all(s.remind_after == timedelta(minutes=1) for s in verdict.stages)
    assert (verdict.mode, verdict.approvals, verdict.on_timeout) == (Mode.SYNC, 1, OnTimeout.APPROVE)
    assert verdict.undo_operation == "reverse_refund"
    assert verdict.sensitive == ("card", "customer.email")
    assert verdict.summary == "Refund $620 to Ana on •••••• (••••••, ?)"


def test_defaults_fill_what_the_action_leaves_out() -> None:
    verdict = decide_("nope")
    assert [s.pool for s in verdict.stages] == ["p1"]
    assert verdict.stages[0].timeout == timedelta(minutes=10)
    assert verdict.stages[0].remind_after == timedelta(minutes=5)  # 50% of 10m
    assert verdict.on_timeout is OnTimeout.REJECT


def test_two_reviewers() -> None:
    assert decide_("always").approvals == 2


def test_async_depth_limit_forces_waiting() -> None:
    assert decide_("later", pending_in_workflow=1).mode is Mode.ASYNC
    forced = decide_("later", pending_in_workflow=2, context={"workflow_id": "wf-9"})
    assert forced.mode is Mode.SYNC
    assert "workflow wf-9 already has 2 undecided async request(s) (max_pending: 2)" in forced.reason


def test_sample_mode() -> None:
    assert decide_("sampled", sample_draw=0.1).sampled is True
    assert decide_("sampled", sample_draw=0.3).sampled is False
    assert decide_("sampled").mode is Mode.SAMPLE


def test_default_summary_prefers_agent_then_description() -> None:
    assert decide_("always", context={"summary": "Agent says"}).summary == "Agent says"
    assert decide_("never").summary == "Never"
