"""Every manifest error and warning: its message, and the place it points at."""

from __future__ import annotations

import pytest

from policy import Severity
from tests.policy.helpers import load

POOLS = "pools:\n  p1: {channel: C1, members: [U1]}\n  p2: {channel: C2, members: [U2, U3]}\n"

# (id, manifest text, severity, message fragment, line, column, action)
CASES = [
    (
        "unknown top key",
        "tenant: t\nactoins: {}\n",
        "error",
        "unknown key 'actoins'; did you mean 'actions'?",
        2,
        1,
        None,
    ),
    (
        "unknown action key",
        "tenant: t\nactions:\n  a:\n    reviewr: p1\n",
        "error",
        "unknown key 'reviewr'; did you mean 'reviewer'?",
        4,
        5,
        "a",
    ),
    (
        "unknown key, no hint",
        "tenant: t\nactions:\n  a:\n    zzz: 1\n",
        "error",
        "unknown key 'zzz'; known keys: ",
        4,
        5,
        "a",
    ),
    (
        "unknown pool key",
        "tenant: t\npools:\n  p:\n    chanel: C1\n",
        "error",
        "unknown key 'chanel'; did you mean 'channel'?",
        4,
        5,
        None,
    ),
    (
        "unknown defaults key",
        "tenant: t\ndefaults:\n  timout: 5m\n",
        "error",
        "unknown key 'timout'; did you mean 'timeout'?",
        3,
        3,
        None,
    ),
    ("bad tenant name", "tenant: Acme Corp\n", "error", "tenant: String should match pattern", 1, 1, None),
    (
        "duplicate action",
        "tenant: t\nactions:\n  a: {}\n  a: {}\n",
        "error",
        "duplicate key 'a': the action is defined twice",
        4,
        3,
        "a",
    ),
    (
        "duplicate pool",
        "tenant: t\npools:\n  p: {}\n  p: {}\n",
        "error",
        "duplicate key 'p': the pool is defined twice",
        4,
        3,
        None,
    ),
    ("negative timeout", "tenant: t\nactions:\n  a:\n    timeout: -5m\n", "error", "is negative", 4, 5, "a"),
    (
        "zero timeout_minutes",
        "tenant: t\nactions:\n  a:\n    timeout_minutes: 0\n",
        "error",
        "timeout_minutes must be positive",
        4,
        5,
        "a",
    ),
    (
        "timeout without unit",
        "tenant: t\nactions:\n  a:\n    timeout: 300\n",
        "error",
        "a duration needs a unit: write e.g. 90s, 5m, 4h, 2d or '5 minutes' (got 300)",
        4,
        5,
        "a",
    ),
    (
        "unreadable timeout",
        "tenant: t\nactions:\n  a:\n    timeout: soon\n",
        "error",
        "cannot read duration 'soon'",
        4,
        5,
        "a",
    ),
    (
        "both timeouts",
        "tenant: t\nactions:\n  a:\n    timeout: 5m\n    timeout_minutes: 5\n",
        "error",
        "'timeout_minutes' and 'timeout' mean the same thing",
        5,
        5,
        "a",
    ),
    (
        "synonym conflict",
        "tenant: t\nactions:\n  a:\n    reviewer: p1\n    reviewer_pool: p2\n",
        "error",
        "'reviewer' and 'reviewer_pool' mean the same thing",
        4,
        5,
        "a",
    ),
    (
        "if and threshold",
        "tenant: t\nactions:\n  a:\n    if: x > 1\n    threshold: 3\n",
        "error",
        "use either 'if' or 'threshold'",
        5,
        5,
        "a",
    ),
    (
        "two reviewers vs approvals",
        "tenant: t\nactions:\n  a:\n    require_two_reviewers: true\n    approvals: 3\n",
        "error",
        "require_two_reviewers contradicts approvals: 3",
        5,
        5,
        "a",
    ),
    (
        "mode vs blocking",
        "tenant: t\nactions:\n  a:\n    mode: sync\n    blocking: false\n",
        "error",
        "mode: sync contradicts blocking: false",
        4,
        5,
        "a",
    ),
    (
        "sample without rate",
        "tenant: t\nactions:\n  a:\n    mode: sample\n",
        "error",
        "mode: sample needs sample_rate",
        4,
        5,
        "a",
    ),
    (
        "rate without sample",
        "tenant: t\nactions:\n  a:\n    sample_rate: 0.5\n",
        "error",
        "sample_rate only applies with mode: sample",
        4,
        5,
        "a",
    ),
    (
        "audit_log false",
        "tenant: t\nactions:\n  a:\n    audit_log: false\n",
        "error",
        "every request is audited",
        4,
        5,
        "a",
    ),
    (
        "bad on_timeout",
        "tenant: t\nactions:\n  a:\n    on_timeout: maybe\n",
        "error",
        "on_timeout: Input should be 'reject' or 'approve'",
        4,
        5,
        "a",
    ),
    (
        "zero approvals",
        "tenant: t\nactions:\n  a:\n    approvals: 0\n",
        "error",
        "approvals: Input should be greater than or equal to 1",
        4,
        5,
        "a",
    ),
    (
        "bad sensitive path",
        "tenant: t\nactions:\n  a:\n    sensitive: ['a b']\n",
        "error",
        "sensitive path 'a b' is not a dotted field name",
        4,
        5,
        "a",
    ),
    (
        "bad remind_at",
        "tenant: t\ndefaults:\n  remind_at: 150%\n",
        "error",
        "remind_at must be between 0% and 100%",
        3,
        3,
        None,
    ),
    (
        "too many approvals",
        "tenant: t\n" + POOLS + "actions:\n  a:\n    reviewer_pool: p1\n    fallback: p2\n    approvals: 3\n",
        "error",
        "approvals: 3 but no pool in the chain has that many members (p1: 1, p2: 2)",
        9,
        5,
        "a",
    ),
    (
        "condition syntax",
        "tenant: t\nactions:\n  a:\n    if: amount >\n",
        "error",
        "condition `amount >`: syntax error",
        4,
        17,
        "a",
    ),
    (
        "condition syntax quoted",
        "tenant: t\nactions:\n  a:\n    if: 'amount > > 1'\n",
        "error",
        "syntax error",
        4,
        19,
        "a",
    ),
    (
        "condition on 2nd line",
        "tenant: t\nactions:\n  a:\n    if: |\n      amount > 1 &&\n      > foo\n",
        "error",
        "syntax error",
        6,
        7,
        "a",
    ),
    (
        "undeclared name",
        "tenant: t\nactions:\n  a:\n    params: [amount]\n    if: amout > 1\n",
        "error",
        "'amout' is not a request field; did you mean 'amount'?",
        5,
        9,
        "a",
    ),
    ("invalid yaml", "tenant: t\nactions: [\n", "error", "invalid YAML", 3, 1, None),
    ("not a mapping", "- a\n- b\n", "error", "a manifest must be a mapping of keys", None, None, None),
    (
        "control character",
        "tenant: t\x1f\n",
        "error",
        "invalid YAML: special characters are not allowed",
        None,
        None,
        None,
    ),
    (
        "test block typo",
        "tenant: t\ntests:\n  - action: a\n    expct: {outcome: review}\n",
        "error",
        "unknown key 'expct'; did you mean 'expect'?",
        4,
        5,
        None,
    ),
    (
        "test bad outcome",
        "tenant: t\ntests:\n  - action: a\n    expect: {outcome: maybe}\n",
        "error",
        "tests.0.expect.outcome: Input should be",
        4,
        14,
        None,
    ),
    # warnings
    (
        "undefined pool",
        "tenant: t\nactions:\n  a:\n    reviewer_pool: ghost\n",
        "warning",
        "pool 'ghost' is not defined here",
        4,
        5,
        "a",
    ),
    (
        "undefined default pool",
        "tenant: t\ndefaults:\n  default_pool: ghost\n",
        "warning",
        "default_pool 'ghost' is not defined here",
        3,
        3,
        None,
    ),
    (
        "no pool at all",
        "tenant: t\nactions:\n  a: {}\n",
        "warning",
        "no reviewer_pool and no defaults.default_pool: requests will fail closed",
        3,
        3,
        "a",
    ),
    (
        "small pool in chain",
        "tenant: t\n" + POOLS + "actions:\n  a:\n    reviewer_pool: p1\n    fallback: p2\n    approvals: 2\n",
        "warning",
        "pool 'p1' has 1 member(s), fewer than the 2 approvals needed",
        6,
        3,
        "a",
    ),
    (
        "async without hosts",
        "tenant: t\n" + POOLS + "actions:\n  a:\n    reviewer_pool: p1\n    blocking: false\n",
        "warning",
        "async action but callbacks.allowed_hosts is empty",
        6,
        3,
        "a",
    ),
    (
        "rate limit not positive",
        "tenant: t\nrate_limits:\n  per_key: {rate: 0, burst: 5}\n",
        "error",
        "rate_limits.per_key.rate: must be a positive number (got 0)",
        3,
        13,
        None,
    ),
    (
        "rate limit not a number",
        "tenant: t\nrate_limits:\n  per_tenant: {rate: 20/s}\n",
        "error",
        "rate_limits.per_tenant.rate: must be a positive number (got '20/s')",
        3,
        16,
        None,
    ),
    (
        "rate limit burst under one",
        "tenant: t\nrate_limits:\n  per_key: {rate: 5, burst: 0.5}\n",
        "error",
        "rate_limits.per_key: burst must be at least 1",
        3,
        22,
        None,
    ),
    (
        "rate limit without rate",
        "tenant: t\nrate_limits:\n  per_key: {burst: 5}\n",
        "error",
        "rate_limits.per_key.rate: is required",
        3,
        3,
        None,
    ),
    (
        "rate limit as a bare number",
        "tenant: t\nrate_limits:\n  per_key: 20\n",
        "error",
        "rate_limits.per_key: write {rate: N, burst: M}",
        3,
        3,
        None,
    ),
    (
        "unknown rate limit key",
        "tenant: t\nrate_limits:\n  per_tenat: {rate: 5}\n",
        "error",
        "unknown key 'per_tenat'; did you mean 'per_tenant'?",
        3,
        3,
        None,
    ),
    (
        "unknown actions fail closed",
        "tenant: t\n",
        "warning",
        "unknown actions require approval but defaults.default_pool is not set",
        None,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "severity", "fragment", "line", "column", "action"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_problem(
    text: str, severity: str, fragment: str, line: int | None, column: int | None, action: str | None
) -> None:
    policy, problems = load(text)
    matching = [p for p in problems if fragment in p.message]
    assert matching, f"no problem mentions {fragment!r}; got {[str(p) for p in problems]}"
    problem = matching[0]
    assert problem.severity is Severity(severity)
    assert (problem.line, problem.column) == (line, column)
    assert problem.action == action
    assert problem.file == "t.yaml"
    if severity == "error":
        assert policy is None
    else:
        assert policy is not None


def test_problem_string_names_file_tenant_action_line_and_column() -> None:
    _, problems = load("tenant: acme\nactions:\n  refund:\n    reviewr: p1\n")
    assert (
        str(problems[0])
        == "error: t.yaml:4:5 [acme/refund]: actions.refund: unknown key 'reviewr'; did you mean 'reviewer'?"
    )
