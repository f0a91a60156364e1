"""The pure replay behind ``countersign simulate``: how a change is named, and a sampled action replayed the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from policy import TenantPolicy, load_text
from policy.simulation import Recorded, Route, change_kind, percentile, simulate
from policy.types import Outcome

MANIFEST = """\
tenant: acme
pools:
  one: {{channel: C1, members: [U1, U2, U3]}}
  two: {{channel: C2, members: [U4, U5]}}
actions:
  pay:
    if: amount > {threshold}
    reviewer_pool: one
    approvals: {approvals}
  peek:
    mode: sample
    sample_rate: 0.5
    reviewer_pool: one
"""


def policy(threshold: int = 100, approvals: int = 1) -> TenantPolicy:
    loaded, problems = load_text(MANIFEST.format(threshold=threshold, approvals=approvals), file="acme.yaml")
    assert loaded is not None, problems
    return loaded


def recorded(request_id: str, action: str, amount: int, route: Route) -> Recorded:
    return Recorded(request_id, action, {"amount": amount}, {}, route, datetime(2026, 1, 1, tzinfo=UTC))


def test_each_kind_of_change_is_named_for_what_a_reviewer_notices() -> None:
    one = Route(Outcome.REVIEW, "one", 1)
    assert change_kind(one, one) == "unchanged"
    assert change_kind(one, Route(Outcome.AUTO_APPROVE)) == "auto-approve"
    assert change_kind(Route(Outcome.AUTO_APPROVE), one) == "review"
    assert change_kind(one, Route(Outcome.DENY)) == "deny"
    assert change_kind(one, Route(Outcome.REVIEW, "two", 1)) == "other pool"
    assert change_kind(one, Route(Outcome.REVIEW, "one", 2)) == "more approvals"
    assert change_kind(Route(Outcome.REVIEW, "one", 2), one) == "fewer approvals"


def test_more_approvals_and_a_higher_threshold_on_the_same_history() -> None:
    reviewed = Route(Outcome.REVIEW, "one", 1)
    history = [recorded(f"r{n}", "pay", amount, reviewed) for n, amount in enumerate((150, 250, 350))]
    result = simulate(policy(threshold=200, approvals=2), history)
    assert [(c.kind, c.count) for c in result.changes] == [("more approvals", 2), ("auto-approve", 1)]
    assert (result.cards_removed, result.cards_added, result.unchanged) == (1, 0, 0)


def test_a_sampled_action_stays_auto_approved_whatever_its_draw() -> None:
    """Sampled requests get a card after the fact, but were never asked: not a change of route."""
    history = [recorded(f"id-{n}", "peek", 0, Route(Outcome.AUTO_APPROVE)) for n in range(200)]
    result = simulate(policy(), history)
    assert (result.requests, result.unchanged, result.changes) == (200, 200, [])


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.95) is None
    assert percentile([3.0, 1.0, 2.0], 0.95) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
