"""Every manifest key, read the way the manifest author meant it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from policy import Mode, OnTimeout, Risk
from policy.models import Manifest
from policy.types import OnError, UnknownAction
from tests.policy.helpers import load_ok

BASE = "tenant: acme\npools: {p1: {channel: C1, members: [U1, U2]}, p2: {channel: C2, members: [U3, U4]}, p3: {channel: C3, members: [U5, U6]}}\n"

CASES: list[tuple[str, str, Callable[[Manifest], Any], Any]] = [
    ("tenant", "", lambda m: m.tenant, "acme"),
    ("description", "description: Support\n", lambda m: m.description, "Support"),
    ("slack.team_id", "slack: {team_id: T01}\n", lambda m: m.slack.team_id, "T01"),
    ("admins", "admins: [U1]\n", lambda m: m.admins, ["U1"]),
    ("defaults.timeout", "defaults: {timeout: 90s}\n", lambda m: m.defaults.timeout, timedelta(seconds=90)),
    (
        "defaults.timeout_minutes",
        "defaults: {timeout_minutes: 2}\n",
        lambda m: m.defaults.timeout,
        timedelta(minutes=2),
    ),
    ("defaults.on_timeout", "defaults: {on_timeout: approve}\n", lambda m: m.defaults.on_timeout, OnTimeout.APPROVE),
    (
        "defaults.unknown_action",
        "defaults: {unknown_action: deny}\n",
        lambda m: m.defaults.unknown_action,
        UnknownAction.DENY,
    ),
    ("defaults.on_error", "defaults: {on_error: deny}\n", lambda m: m.defaults.on_error, OnError.DENY),
    ("defaults.default_pool", "defaults: {default_pool: p1}\n", lambda m: m.defaults.default_pool, "p1"),
    ("defaults.remind_at %", "defaults: {remind_at: 25%}\n", lambda m: m.defaults.remind_at, 0.25),
    (
        "defaults.remind_at duration",
        "defaults: {remind_at: 2m}\n",
        lambda m: m.defaults.remind_at,
        timedelta(minutes=2),
    ),
    (
        "callbacks.allowed_hosts",
        "callbacks: {allowed_hosts: [a.example]}\n",
        lambda m: m.callbacks.allowed_hosts,
        ["a.example"],
    ),
    (
        "rate_limits",
        "rate_limits:\n  per_key: {rate: 20, burst: 40}\n  per_tenant: {rate: 50, burst: 100}\n",
        lambda m: (m.rate_limits.per_key.capacity, m.rate_limits.per_tenant.rate, m.rate_limits.per_tenant.capacity),
        (40, 50, 100),
    ),
    (
        "rate_limits burst: twice the rate",
        "rate_limits: {per_key: {rate: 5}}\n",
        lambda m: m.rate_limits.per_key.capacity,
        10,
    ),
    (
        "rate_limits burst: at least 1",
        "rate_limits: {per_key: {rate: 0.2}}\n",
        lambda m: m.rate_limits.per_key.capacity,
        1,
    ),
    (
        "rate_limits: defaults",
        "",
        lambda m: (m.rate_limits.per_key.rate, m.rate_limits.per_key.capacity, m.rate_limits.per_tenant.rate),
        (1000, 2000, 2000),
    ),
    ("rate_limits: empty", "rate_limits:\n", lambda m: m.rate_limits.per_tenant.capacity, 4000),
    ("pools.channel", "", lambda m: m.pools["p1"].channel, "C1"),
    ("pools.members", "", lambda m: m.pools["p1"].members, ["U1", "U2"]),
    ("pools.usergroup", "pools: {g: {channel: C9, usergroup: S01}}\n", lambda m: m.pools["g"].usergroup, "S01"),
    ("pools: empty pool", "pools: {later:}\n", lambda m: m.pools["later"].members, []),
]

A = "actions:\n  act:\n"
ACTION_CASES: list[tuple[str, str, Callable[[Any], Any], Any]] = [
    ("description", "    description: Do it\n", lambda r: r.description, "Do it"),
    ("approval_required", "    approval_required: false\n", lambda r: r.approval_required, False),
    ("if", "    if: amount > 5\n", lambda r: r.condition_source, "amount > 5"),
    ("threshold", "    threshold: 500\n", lambda r: r.condition_source, "amount > 500"),
    ("threshold float", "    threshold: 99.5\n", lambda r: r.condition_source, "amount > 99.5"),
    ("params", "    params: [amount]\n", lambda r: r.params, ["amount"]),
    ("reviewer_pool", "    reviewer_pool: p1\n", lambda r: r.reviewer_pool, "p1"),
    ("reviewer", "    reviewer: p1\n", lambda r: r.reviewer_pool, "p1"),
    ("fallback", "    fallback: p2\n", lambda r: r.fallback, "p2"),
    ("escalate_to", "    escalate_to: p3\n", lambda r: r.escalate_to, "p3"),
    ("timeout 5m", "    timeout: 5m\n", lambda r: r.timeout, timedelta(minutes=5)),
    ("timeout 5 minutes", "    timeout: 5 minutes\n", lambda r: r.timeout, timedelta(minutes=5)),
    ("timeout 4 hours", "    timeout: 4 hours\n", lambda r: r.timeout, timedelta(hours=4)),
    ("timeout 2d", "    timeout: 2d\n", lambda r: r.timeout, timedelta(days=2)),
    ("timeout 30 seconds", "    timeout: 30 seconds\n", lambda r: r.timeout, timedelta(seconds=30)),
    ("timeout 1 hour", "    timeout: 1 hour\n", lambda r: r.timeout, timedelta(hours=1)),
    ("timeout_minutes", "    timeout_minutes: 15\n", lambda r: r.timeout, timedelta(minutes=15)),
    ("approvals", "    approvals: 2\n", lambda r: r.required_approvals, 2),
    ("require_two_reviewers", "    require_two_reviewers: true\n", lambda r: r.required_approvals, 2),
    ("default approvals", "", lambda r: r.required_approvals, 1),
    ("blocking true", "    blocking: true\n", lambda r: r.effective_mode, Mode.SYNC),
    ("blocking false", "    blocking: false\n", lambda r: r.effective_mode, Mode.ASYNC),
    ("default mode", "", lambda r: r.effective_mode, Mode.SYNC),
    (
        "mode sample",
        "    mode: sample\n    sample_rate: 0.2\n",
        lambda r: (r.effective_mode, r.sample_rate),
        (Mode.SAMPLE, 0.2),
    ),
    ("max_pending", "    blocking: false\n    max_pending: 3\n", lambda r: r.max_pending, 3),
    ("undo_operation", "    undo_operation: undo_it\n", lambda r: r.undo_operation, "undo_it"),
    ("undo_operation null", "    undo_operation: null\n", lambda r: r.undo_operation, None),
    ("on_rejection", "    on_rejection: rollback\n", lambda r: r.undo_operation, "rollback"),
    ("sensitive", "    sensitive: [card, customer.email]\n", lambda r: r.sensitive_paths, ("card", "customer.email")),
    ("summary", "    summary: 'Refund ${amount}'\n", lambda r: r.summary, "Refund ${amount}"),
    ("on_timeout", "    on_timeout: approve\n", lambda r: r.on_timeout, OnTimeout.APPROVE),
    ("on_error", "    on_error: deny\n", lambda r: r.on_error, OnError.DENY),
    ("remind_at", "    remind_at: 75%\n", lambda r: r.remind_at, 0.75),
    ("risk", "    risk: critical\n", lambda r: r.risk, Risk.CRITICAL),
    ("audit_log", "    audit_log: true\n", lambda r: r.audit_log, True),
]


@pytest.mark.parametrize(("key", "yaml", "get", "want"), CASES, ids=[c[0] for c in CASES])
def test_tenant_keys(key: str, yaml: str, get: Callable[[Manifest], Any], want: Any) -> None:
    text = BASE + yaml if not yaml.startswith("pools:") else "tenant: acme\n" + yaml
    assert get(load_ok(text).manifest) == want


@pytest.mark.parametrize(("key", "yaml", "get", "want"), ACTION_CASES, ids=[c[0] for c in ACTION_CASES])
def test_action_keys(key: str, yaml: str, get: Callable[[Any], Any], want: Any) -> None:
    policy = load_ok(BASE + "callbacks: {allowed_hosts: [h]}\n" + A + (yaml or "    description: x\n"))
    assert get(policy.manifest.actions["act"]) == want


def test_tests_block_keys() -> None:
    policy = load_ok(
        BASE
        + A
        + "    reviewer_pool: p1\n"
        + "tests:\n  - name: n\n    action: act\n    params: {a: 1}\n    context: {reason: r}\n"
        + "    expect: {outcome: review, pool: p1, pools: [p1], approvals: 1, mode: sync, timeout: 15m,"
        + " undo_operation: null, reason_contains: always}\n"
    )
    test = policy.manifest.tests[0]
    assert (test.name, test.action, test.params, test.context["reason"]) == ("n", "act", {"a": 1}, "r")


def test_tenant_comes_from_path_when_missing() -> None:
    from policy import load_text

    policy, _ = load_text("actions: {}\n", file="x/policy.yaml", default_tenant="from_path")
    assert policy is not None and policy.tenant == "from_path"


def test_tenant_key_wins_over_path() -> None:
    from policy import load_text

    policy, _ = load_text("tenant: named\n", file="other.yaml", default_tenant="other")
    assert policy is not None and policy.tenant == "named"
