"""`require:` (a cross-pool quorum): the lines a decision carries, the tally that counts one person once
(a maximum matching of approvers to lines), routing that checks the quorum up front, manifest tests that
expect the lines, and every mistake in the key reported at its place (file, action, line, column)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policy import (
    ActionRequest,
    CastVote,
    Choice,
    Outcome,
    PoolView,
    Severity,
    TallyResult,
    decide,
    match_quorum,
    quorum_for,
    route_quorum,
    run_tests,
    tally_quorum,
)
from tests.policy.helpers import load, load_ok

REFUNDS = """\
tenant: t
pools:
  security_team: {channel: C1, members: [U0ANN, U0BOB]}
  finance_team: {channel: C2, members: [U0ANN, U0CAT]}
  seniors: {channel: C3, members: [U0DAN]}
actions:
  process_refund:
    timeout: 10m
    require:
      - {pool: security_team, approvals: 1}
      - {pool: finance_team, approvals: 1, fallback: seniors, timeout: 2m}
    rules:
      - if: amount > 5000
        on_timeout: approve
tests:
  - action: process_refund
    params: {amount: 10}
    expect: {outcome: review, require: [{pool: security_team, approvals: 1}, {pool: finance_team}], approvals: 2}
  - action: process_refund
    params: {amount: 10}
    expect: {outcome: review, require: [{pool: finance_team}]}
"""

SEC, FIN = frozenset({"U0ANN", "U0BOB"}), frozenset({"U0ANN", "U0CAT"})


def approve(*users: str) -> list[CastVote]:
    return [CastVote(user=u, choice=Choice.APPROVE) for u in users]


def test_a_decision_carries_the_lines_with_their_chains_and_timeouts() -> None:
    policy = load_ok(REFUNDS)
    verdict = decide(policy, ActionRequest(tenant="t", action="process_refund", params={"amount": 10}))
    assert verdict.outcome is Outcome.REVIEW
    assert [(q.pool, q.approvals, [s.pool for s in q.stages]) for q in verdict.quorum] == [
        ("security_team", 1, ["security_team"]),
        ("finance_team", 1, ["finance_team", "seniors"]),
    ]
    assert [q.stages[0].timeout for q in verdict.quorum] == [timedelta(minutes=10), timedelta(minutes=2)]
    assert verdict.approvals == 2 and [s.pool for s in verdict.stages] == ["security_team"]
    # A rule that sets neither pools nor approvals keeps the action's lines (and its on_timeout applies).
    routed = decide(policy, ActionRequest(tenant="t", action="process_refund", params={"amount": 9000}))
    assert routed.rule == 1 and [q.pool for q in routed.quorum] == ["security_team", "finance_team"]
    assert quorum_for(policy, "process_refund", {"amount": 9000}, {}) == routed.quorum


def test_manifest_tests_expect_the_quorum_lines() -> None:
    outcomes = run_tests(load_ok(REFUNDS))
    assert [o.passed for o in outcomes] == [True, False]
    assert outcomes[1].failures == (
        "expected require ['finance_team: 1'], got ['security_team: 1', 'finance_team: 1']",
    )


# (id, lines as (approvals, members), votes, result, who fills each line)
TALLIES = [
    ("nobody yet", [(1, SEC), (1, FIN)], [], TallyResult.PENDING, [[], []]),
    ("one pool only", [(1, SEC), (1, FIN)], approve("U0BOB"), TallyResult.PENDING, [["U0BOB"], []]),
    ("both pools", [(1, SEC), (1, FIN)], approve("U0BOB", "U0CAT"), TallyResult.APPROVED, [["U0BOB"], ["U0CAT"]]),
    ("a person in both pools counts once", [(1, SEC), (1, FIN)], approve("U0ANN"), TallyResult.PENDING, [["U0ANN"], []]),
    (
        "the person in both moves to the line only they can fill",
        [(1, SEC), (1, FIN)],
        approve("U0ANN", "U0BOB"),
        TallyResult.APPROVED,
        [["U0BOB"], ["U0ANN"]],
    ),
    (
        "two from security and one from finance: two people fill two seats only",
        [(2, SEC), (1, FIN)],
        approve("U0ANN", "U0BOB"),
        TallyResult.PENDING,
        [["U0ANN", "U0BOB"], []],
    ),
    (
        "two from security and one from finance, met by three people",
        [(2, SEC), (1, FIN)],
        approve("U0ANN", "U0BOB", "U0CAT"),
        TallyResult.APPROVED,
        [["U0ANN", "U0BOB"], ["U0CAT"]],
    ),
    (
        "a rejection in either pool rejects",
        [(1, SEC), (1, FIN)],
        [*approve("U0BOB"), CastVote(user="U0CAT", choice=Choice.REJECT)],
        TallyResult.REJECTED,
        [["U0BOB"], []],
    ),
    ("an approver in neither pool counts for nothing", [(1, SEC), (1, FIN)], approve("U0ZED"), TallyResult.PENDING,
     [[], []]),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "votes", "result", "filled"), [t[1:] for t in TALLIES], ids=[t[0] for t in TALLIES])
def test_the_quorum_tally_counts_each_person_once(
    lines: list[tuple[int, frozenset[str]]], votes: list[CastVote], result: TallyResult, filled: list[list[str]]
) -> None:
    assert tally_quorum(lines=lines, votes=votes) is result
    approvers = [v.user for v in votes if v.choice is Choice.APPROVE]
    assert [sorted(f) for f in match_quorum(lines, approvers)] == [sorted(f) for f in filled]


def test_an_earlier_approver_is_moved_to_the_line_only_they_can_fill() -> None:
    lines = [(2, SEC | {"U0EVE"}), (1, FIN)]
    # ANN filled a security seat first; EVE's vote moves her to finance (augmenting path), so all three count.
    assert [sorted(f) for f in match_quorum(lines, ["U0ANN", "U0BOB"])] == [["U0ANN", "U0BOB"], []]
    assert sorted(map(sorted, match_quorum(lines, ["U0ANN", "U0BOB", "U0EVE"]))) == [["U0ANN"], ["U0BOB", "U0EVE"]]
    assert tally_quorum(lines=lines, votes=approve("U0ANN", "U0BOB", "U0EVE")) is TallyResult.APPROVED


def pools(**members: set[str]) -> dict[str, PoolView]:
    return {name: PoolView(name=name, channel="C" + name, members=frozenset(m)) for name, m in members.items()}


def test_routing_checks_the_quorum_up_front() -> None:
    lines = load_ok(REFUNDS).quorum["process_refund"]
    ok = route_quorum(lines, pools(security_team={"A", "B"}, finance_team={"A", "C"}, seniors={"D"}), None)
    assert not ok.fails_closed and [r.stages[0].pool for _, r in ok.lines] == ["security_team", "finance_team"]
    # finance cannot serve (only the person acted for): its line falls back to seniors
    fallback = route_quorum(lines, pools(security_team={"A", "B"}, finance_team={"C"}, seniors={"D"}), "C")
    assert [r.stages[0].pool for _, r in fallback.lines] == ["security_team", "seniors"]
    # security's line has no fallback: the request fails closed, saying which line
    closed = route_quorum(lines, pools(finance_team={"A", "C"}, seniors={"D"}), None)
    assert closed.fails_closed and "require line 1: pool 'security_team' is not defined" in closed.explain()
    # one person alone in both pools cannot meet two lines
    short = route_quorum(lines, pools(security_team={"A"}, finance_team={"A"}, seniors={"D"}), None)
    assert short.fails_closed and "fill only 1 of the 2 approvals" in short.explain()


A = "tenant: t\npools:\n  p1: {channel: C1, members: [U1, U2]}\n  finance: {channel: C2, members: [U1]}\nactions:\n  a:\n"

# (id, action body, severity, message fragment, line, column)
PROBLEMS = [
    (
        "require with reviewer_pool",
        "    reviewer_pool: p1\n    require:\n      - {pool: p1}\n",
        "error",
        "'reviewer_pool' cannot be used with require",
        7,
        5,
    ),
    (
        "require with approvals",
        "    approvals: 2\n    require:\n      - {pool: p1}\n",
        "error",
        "'approvals' cannot be used with require",
        7,
        5,
    ),
    ("require empty", "    require: []\n", "error", "require needs at least one line", 7, 5),
    ("a line without pool", "    require:\n      - {approvals: 1}\n", "error", "require.0.pool: is required", 8, 9),
    (
        "a line's unknown key",
        "    require:\n      - {pool: p1, aprovals: 1}\n",
        "error",
        "unknown key 'aprovals'; did you mean 'approvals'?",
        8,
        20,
    ),
    ("a line as a bare name", "    require:\n      - p1\n", "error", "a require line is a mapping", 8, 9),
    (
        "a line's pool typo",
        "    require:\n      - {pool: p1}\n      - {pool: finanse}\n",
        "error",
        "no pool 'finanse' here: did you mean 'finance'?",
        9,
        10,
    ),
    (
        "a line's fallback typo",
        "    require:\n      - {pool: p1, fallback: finanse}\n",
        "error",
        "no pool 'finanse' here: did you mean 'finance'?",
        8,
        20,
    ),
    (
        "a line's pool not defined",
        "    require:\n      - {pool: security}\n",
        "warning",
        "pool 'security' is not defined here",
        8,
        10,
    ),
    (
        "a line asks more approvals than its pool has",
        "    require:\n      - {pool: finance, approvals: 2}\n",
        "error",
        "require line 1 needs 2 approval(s) but no pool of it has that many members (finance: 1)",
        8,
        25,
    ),
    (
        "lines distinct people cannot meet",
        "    require:\n      - {pool: p1, approvals: 2}\n      - {pool: finance}\n",
        "error",
        "require cannot be met by distinct people: line 1 (2 from 'p1') and line 2 (1 from 'finance')",
        7,
        5,
    ),
    (
        "a rule that sets require",
        "    require:\n      - {pool: p1}\n    rules:\n      - {if: x, require: [{pool: finance}]}\n",
        "error",
        "a rule cannot set require",
        10,
        17,
    ),
    (
        "a rule that sets a pool of a quorum action",
        "    require:\n      - {pool: p1}\n    rules:\n      - {if: x, reviewer_pool: finance}\n",
        "error",
        "rule 1 sets reviewer_pool, but this action's pools and approvals come from require",
        9,
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
