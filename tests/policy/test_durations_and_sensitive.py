from __future__ import annotations

from datetime import timedelta

import pytest

from policy.durations import format_duration, parse_duration
from policy.sensitive import MASK, digest, mask, params_sha256, redact


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        ("5 minutes", timedelta(minutes=5)),
        ("1 hour", timedelta(hours=1)),
        ("30 seconds", timedelta(seconds=30)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("4 Hours", timedelta(hours=4)),
    ],
)
def test_parse_duration(text: str, want: timedelta) -> None:
    assert parse_duration(text) == want


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot read"),
        ("5", "cannot read"),
        ("5 fortnights", "cannot read"),
        ("-5m", "negative"),
        ("0s", "longer than zero"),
    ],
)
def test_parse_duration_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (90, 300, 5400, 0)] == ["1m30s", "5m", "1h30m", "0s"]


PARAMS = {
    "amount": 5,
    "card": "4111",
    "customer": {"email": "a@x", "name": "Ana"},
    "items": [{"sku": 1, "secret": "s"}],
}
PATHS = ["card", "customer.email", "items.secret", "absent.path"]


def test_mask_hides_sensitive_values_without_touching_the_original() -> None:
    masked = mask(PARAMS, PATHS)
    assert masked == {
        "amount": 5,
        "card": MASK,
        "customer": {"email": MASK, "name": "Ana"},
        "items": [{"sku": 1, "secret": MASK}],
    }
    assert PARAMS["card"] == "4111"


def test_redact_replaces_sensitive_values_with_digests() -> None:
    redacted = redact(PARAMS, PATHS)
    assert redacted["card"] == digest("4111") and redacted["card"].startswith("sha256:")
    assert "4111" not in str(redacted) and "a@x" not in str(redacted)


def test_params_sha256_binds_action_and_exact_params() -> None:
    assert params_sha256("refund", {"a": 1, "b": 2}) == params_sha256("refund", {"b": 2, "a": 1})
    assert params_sha256("refund", {"a": 1}) != params_sha256("refund", {"a": 2})
    assert params_sha256("refund", {"a": 1}) != params_sha256("charge", {"a": 1})
