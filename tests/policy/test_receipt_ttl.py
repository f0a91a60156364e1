"""``receipt_ttl``: how long a signed decision receipt is good for (docs/receipts.md), read like other durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policy import receipt_ttl_for
from policy.models import DEFAULT_RECEIPT_TTL, MAX_RECEIPT_TTL
from tests.policy.helpers import load, load_ok

PARSED = [
    ("5m", timedelta(minutes=5)),
    ("90s", timedelta(seconds=90)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("'2 hours'", timedelta(hours=2)),
    ("30d", MAX_RECEIPT_TTL),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_an_action_s_receipt_ttl_is_a_duration(text: str, expected: timedelta) -> None:
    policy = load_ok(f"tenant: t\nactions:\n  refund:\n    receipt_ttl: {text}\n")
    assert receipt_ttl_for(policy, "refund") == expected


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_the_default_receipt_ttl_is_a_duration(text: str, expected: timedelta) -> None:
    policy = load_ok(f"tenant: t\ndefaults:\n  receipt_ttl: {text}\nactions:\n  refund: {{}}\n")
    assert receipt_ttl_for(policy, "refund") == expected
    assert receipt_ttl_for(policy, "not_in_the_manifest") == expected


def test_without_receipt_ttl_a_receipt_is_good_for_15_minutes_and_the_action_s_wins() -> None:
    assert timedelta(minutes=15) == DEFAULT_RECEIPT_TTL
    policy = load_ok("tenant: t\ndefaults: {receipt_ttl: 1h}\nactions:\n  a: {receipt_ttl: 2m}\n  b: {}\n")
    assert receipt_ttl_for(policy, "a") == timedelta(minutes=2)
    assert receipt_ttl_for(policy, "b") == timedelta(hours=1)
    assert receipt_ttl_for(load_ok("tenant: t\n"), "a") == DEFAULT_RECEIPT_TTL
    assert receipt_ttl_for(None, "a") == DEFAULT_RECEIPT_TTL  # a tenant whose manifest was removed


REFUSED = [
    ("15", "a duration needs a unit"),
    ("0s", "must be longer than zero"),
    ("-5m", "negative"),
    ("soon", "cannot read duration"),
    ("true", "a duration needs a unit"),
    ("31d", "receipt_ttl is at most 30d"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
@pytest.mark.parametrize("where", ["action", "defaults"])
def test_a_bad_receipt_ttl_is_an_error_at_its_file_and_line(text: str, message: str, where: str) -> None:
    if where == "action":
        source, line, key = (
            f"tenant: t\nactions:\n  refund:\n    receipt_ttl: {text}\n",
            4,
            "actions.refund.receipt_ttl",
        )
    else:
        source, line, key = f"tenant: t\ndefaults:\n  receipt_ttl: {text}\n", 3, "defaults.receipt_ttl"
    policy, problems = load(source, file="acme.yaml")
    assert policy is None
    [problem] = problems
    assert (problem.file, problem.line) == ("acme.yaml", line)
    assert key in problem.message and message in problem.message, problem.message
