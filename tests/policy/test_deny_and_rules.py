"""`deny_if`, `deny_reason`, `rules:` and `context.*` in conditions: what they decide, and every mistake
in them reported at its place (file, action, line, column)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from policy import ActionRequest, Mode, OnTimeout, Outcome, Severity, decide, on_timeout_for, stages_for
from policy.types import RequestContext
from tests.policy.helpers import load, load_ok

REFUNDS = """\
tenant: t
pools:
  support: {channel: C1, members: [U1, U2, U3]}
  finance_team: {channel: C2, members: [U4, U5]}
  seniors: {channel: C3, members: [U6]}
callbacks: {allowed_hosts: [agents.example]}
actions:
  process_refund:
    params: [amount, currency]
    deny_if: amount > 10000
    deny_reason: "Refunds over 10k go through finance"
    reviewer_pool: support
    escalate_to: seniors
    timeout: 10m
    rules:
      - if: amount > 5000
        reviewer_pool: finance_team
        approvals: 2
        blocking: true
        on_timeout: approve
      - if: amount < 50 && context.confidence > 0.9
        blocking: false
      - if: context.labels.team == "vip"
        timeout: 2m
        fallback: finance_team
"""


def ask(params: dict[str, Any], **context: Any) -> Any:
    policy = load_ok(REFUNDS)
    return decide(
        policy, ActionRequest(tenant="t", action="process_refund", params=params, context=RequestContext(**context))
    )


# (id, params, context, outcome, rule, first pool, approvals, mode, on_timeout, reason fragment)
DECISIONS = [
    (
        "deny_if holds: denied with its reason",
        {"amount": 20000},
        {},
        Outcome.DENY,
        None,
        None,
        None,
        None,
        None,
        "Refunds over 10k go through finance",
    ),
    (
        "first rule: another pool, two approvals",
        {"amount": 6000},
        {},
        Outcome.REVIEW,
        1,
        "finance_team",
        2,
        Mode.SYNC,
        OnTimeout.APPROVE,
        "rule 1 (`amount > 5000`)",
    ),
    (
        "second rule reads context: async",
        {"amount": 20},
        {"confidence": 0.95},
        Outcome.REVIEW,
        2,
        "support",
        1,
        Mode.ASYNC,
        OnTimeout.REJECT,
        "rule 2",
    ),
    (
        "second rule's context does not hold: no rule",
        {"amount": 20},
        {"confidence": 0.5},
        Outcome.REVIEW,
        None,
        "support",
        1,
        Mode.SYNC,
        OnTimeout.REJECT,
        "always requires approval",
    ),
    (
        "labels map",
        {"amount": 100},
        {"labels": {"team": "vip"}},
        Outcome.REVIEW,
        3,
        "support",
        1,
        Mode.SYNC,
        OnTimeout.REJECT,
        "rule 3",
    ),
    (
        "first match wins",
        {"amount": 7000},
        {"labels": {"team": "vip"}},
        Outcome.REVIEW,
        1,
        "finance_team",
        2,
        Mode.SYNC,
        OnTimeout.APPROVE,
        "rule 1",
    ),
]


@pytest.mark.parametrize(
    ("params", "context", "outcome", "rule", "pool", "approvals", "mode", "on_timeout", "reason"),
    [c[1:] for c in DECISIONS],
    ids=[c[0] for c in DECISIONS],
)
def test_what_deny_if_and_rules_decide(
    params: dict[str, Any],
    context: dict[str, Any],
    outcome: Outcome,
    rule: int | None,
    pool: str | None,
    approvals: int | None,
    mode: Mode | None,
    on_timeout: OnTimeout | None,
    reason: str,
) -> None:
    verdict = ask(params, **context)
    assert verdict.outcome is outcome and verdict.rule == rule and reason in verdict.reason
    if outcome is Outcome.REVIEW:
        assert (verdict.stages[0].pool, verdict.approvals, verdict.mode, verdict.on_timeout) == (
            pool,
            approvals,
            mode,
            on_timeout,
        )


def test_a_rule_keeps_what_it_does_not_set_and_sets_the_chain_it_names() -> None:
    vip = ask({"amount": 100}, labels={"team": "vip"})
    # rule 3 sets timeout and fallback; the action's reviewer_pool and escalate_to stay
    assert [(s.pool, s.timeout) for s in vip.stages] == [
        ("support", timedelta(minutes=2)),
        ("finance_team", timedelta(minutes=2)),
        ("seniors", timedelta(minutes=2)),
    ]
    finance = ask({"amount": 6000})
    assert [s.pool for s in finance.stages] == ["finance_team", "seniors"]


def test_escalation_and_expiry_follow_the_rule_the_request_matched() -> None:
    """What transitions ask later, from the stored params and context, matches what decide chose."""
    policy = load_ok(REFUNDS)
    stored = {"agent": "refund-bot"}  # a stored context: the agent's name, unset fields absent
    assert on_timeout_for(policy, "process_refund", {"amount": 6000}, stored) is OnTimeout.APPROVE
    assert on_timeout_for(policy, "process_refund", {"amount": 600}, stored) is OnTimeout.REJECT
    assert [s.pool for s in stages_for(policy, "process_refund", {"amount": 100}, {"labels": {"team": "vip"}})] == [
        "support",
        "finance_team",
        "seniors",
    ]


def test_a_rule_whose_condition_cannot_be_evaluated_is_passed_over() -> None:
    verdict = ask({"currency": "EUR"})  # no amount: deny_if and rule 1 cannot be evaluated
    assert verdict.outcome is Outcome.REVIEW and verdict.rule is None


def test_deny_if_that_cannot_be_evaluated_denies_with_on_error_deny() -> None:
    policy = load_ok(
        REFUNDS.replace("    reviewer_pool: support\n", "    reviewer_pool: support\n    on_error: deny\n", 1)
    )
    verdict = decide(policy, ActionRequest(tenant="t", action="process_refund", params={"currency": "EUR"}))
    assert verdict.outcome is Outcome.DENY and "deny_if" in verdict.reason


def test_manifest_tests_can_expect_a_denial_a_rule_and_on_timeout() -> None:
    text = (
        REFUNDS
        + """\
tests:
  - action: process_refund
    params: {amount: 20000}
    expect: {outcome: deny, reason_contains: "go through finance"}
  - action: process_refund
    params: {amount: 6000}
    expect: {outcome: review, rule: 1, pool: finance_team, approvals: 2, on_timeout: approve}
  - action: process_refund
    params: {amount: 600}
    expect: {outcome: review, rule: 0}
  - action: process_refund
    params: {amount: 600}
    expect: {outcome: review, rule: 2}
"""
    )
    from policy import run_tests

    outcomes = run_tests(load_ok(text))
    assert [o.passed for o in outcomes] == [True, True, True, False]
    assert outcomes[3].failures == ("expected rule 2, got 0",)


A = "tenant: t\npools:\n  p1: {channel: C1, members: [U1, U2]}\n  finance: {channel: C2, members: [U3]}\nactions:\n  a:\n"

# (id, action body, severity, message fragment, line, column)
PROBLEMS = [
    (
        "deny_if syntax",
        "    deny_if: amount >\n",
        "error",
        "condition `amount >`: syntax error: the condition ends too early",
        7,
        22,
    ),
    (
        "deny_if undeclared param",
        "    params: [amount]\n    deny_if: amout > 5\n",
        "error",
        "'amout' is not a request field; did you mean 'amount'?",
        8,
        14,
    ),
    ("deny_reason without deny_if", "    deny_reason: nope\n", "error", "deny_reason says why deny_if denies", 7, 5),
    ("a rule with no if", "    rules:\n      - {approvals: 2}\n", "error", "rules.0.if: is required", 8, 9),
    ("a rule that sets nothing", "    rules:\n      - if: amount > 5\n", "error", "this rule sets nothing", 8, 9),
    (
        "a rule's unknown key",
        "    rules:\n      - {if: amount > 5, reviewr: p1}\n",
        "error",
        "unknown key 'reviewr'; did you mean 'reviewer'?",
        8,
        26,
    ),
    (
        "a rule's condition syntax",
        "    rules:\n      - if: amount >> 5\n        approvals: 2\n",
        "error",
        "condition `amount >> 5`: syntax error",
        8,
        21,
    ),
    (
        "a rule's mode contradicts blocking",
        "    rules:\n      - {if: x, mode: sync, blocking: false}\n",
        "error",
        "mode: sync contradicts blocking: false",
        8,
        17,
    ),
    (
        "a rule's pool typo",
        "    reviewer_pool: p1\n    rules:\n      - {if: x, reviewer_pool: finanse}\n",
        "error",
        "no pool 'finanse' here: did you mean 'finance'?",
        9,
        17,
    ),
    (
        "a rule asks more approvals than its pool has",
        "    reviewer_pool: p1\n    rules:\n      - {if: x, reviewer_pool: finance, approvals: 2}\n",
        "error",
        "approvals: 2 but no pool in the chain has that many members (finance: 1)",
        9,
        41,
    ),
    (
        "context typo",
        "    if: context.confidnce > 0.5\n",
        "error",
        "'context.confidnce' is not something agents send; did you mean 'context.confidence'?",
        7,
        17,
    ),
    (
        "rules never apply",
        "    approval_required: false\n    rules:\n      - {if: x, approvals: 2}\n",
        "warning",
        "approval_required is false: its rules never apply",
        8,
        5,
    ),
]


@pytest.mark.parametrize(
    ("body", "severity", "fragment", "line", "column"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_mistakes_are_reported_at_their_place(body: str, severity: str, fragment: str, line: int, column: int) -> None:
    policy, problems = load(A + body)
    matching = [p for p in problems if fragment in p.message]
    assert matching, [str(p) for p in problems]
    problem = matching[0]
    assert (problem.severity, problem.line, problem.column, problem.action, problem.file) == (
        Severity(severity),
        line,
        column,
        "a",
        "t.yaml",
    )
    assert (policy is None) == (severity == "error")
