"""The receipt format (bot.service.receipt_format) against the agent client's own verifier
(countersign_client.receipts): the same digest of any params, and the same verdict on any receipt."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from countersign_client import receipts as client
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.service import receipt_format
from bot.service.models import DecisionOut, RequestOut, VoteOut
from bot.service.receipts import deciders
from policy import Choice, Mode, Status, params_sha256

TRICKY: list[Any] = [
    {},
    {"b": 1, "a": 2, "A": 3, "_": 4, "é": 5, "e": 6, "😀": 7, "\u2028": 8},
    {"name": "Zoë", "city": "Zürich", "note": 'line\nbreak "quoted" \\ back \t tab', "ctl": "\u0001\u001f"},
    {"emoji": "👩‍👩‍👧", "rtl": "مرحبا", "cjk": "漢字", "combining": "e\u0301", "nbsp": "\u00a0", "bom": "\ufeff"},
    {"floats": [0.1, 1.0, -0.0, 1e16, 1e-7, 123456789.123456789, 2.5e-300, 1.7976931348623157e308, 620.50]},
    {"ints": [0, -1, 2**53, 2**53 + 1, 2**70, -(2**64)], "bools": [True, False], "null": None},
    {"nested": {"z": {"y": {"x": [{"b": 1, "a": [1, {"d": 2, "c": 3}]}]}}}, "a": []},
    {"amount": 620, "currency": "EUR", "customer": {"name": "Ana", "email": "ana@example.com"}, "order_id": "A-1"},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("params", TRICKY)
@pytest.mark.parametrize("action", ["process_refund", "ünïcode.action:v2"])
def test_the_client_digests_params_as_the_service_does(action: str, params: dict[str, Any]) -> None:
    assert client.params_sha256(action, params) == params_sha256(action, params)
    reordered = dict(reversed(list(params.items())))
    assert client.params_sha256(action, reordered) == params_sha256(action, params)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_the_client_digests_any_params_as_the_service_does(params: dict[str, Any]) -> None:
    assert client.params_sha256("a", params) == params_sha256("a", params)


def test_a_float_and_an_int_of_the_same_value_are_different_params() -> None:
    """What the agent sent is what was approved: 620 and 620.0 are spelled differently, in both."""
    assert params_sha256("a", {"x": 620}) != params_sha256("a", {"x": 620.0})
    assert client.params_sha256("a", {"x": 620.0}) == params_sha256("a", {"x": 620.0})
    assert not math.isnan(620.0)


SEED, PUBLIC = receipt_format.new_key()
OTHER_SEED, OTHER_PUBLIC = receipt_format.new_key()
PARAMS = TRICKY[2]
NOW = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
PAYLOAD = {
    "request_id": "r1", "tenant": "acme", "action": "refund", "params_sha256": params_sha256("refund", PARAMS),
    "outcome": "approved", "status": "approved", "deciders": ["U1", "U2"], "policy_version": "0123456789abcdef.2",
    "audit_seq": 7, "issued_at": "2026-01-01T10:00:00Z", "expires_at": "2026-01-01T10:15:00Z",
}  # fmt: skip
RECEIPT = receipt_format.sign(PAYLOAD, kid="k1", private_key=SEED)
SERVER_KEYS = {
    "k1": receipt_format.PublicKey("k1", "acme", receipt_format.unb64url(PUBLIC)),
    "k2": receipt_format.PublicKey("k2", "globex", receipt_format.unb64url(OTHER_PUBLIC)),
}
CLIENT_KEYS = {"keys": [{"kid": "k1", "tenant": "acme", "public_key": PUBLIC},
                        {"kid": "k2", "tenant": "globex", "public_key": OTHER_PUBLIC}]}  # fmt: skip


def _edit(change: Any) -> dict[str, Any]:
    receipt = copy.deepcopy(RECEIPT)
    change(receipt)
    return receipt


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("holds", RECEIPT, {}, None),
    ("expired", RECEIPT, {"now": datetime(2026, 1, 1, 10, 15, tzinfo=UTC)}, "expired"),
    ("params changed by one byte", RECEIPT, {"params": {**PARAMS, "name": "Zoe"}}, "params_mismatch"),
    ("another action", RECEIPT, {"action": "refund2"}, "action_mismatch"),
    ("another tenant expected", RECEIPT, {"tenant": "globex"}, "wrong_tenant"),
    ("signed by another tenant's key", receipt_format.sign(PAYLOAD, kid="k2", private_key=OTHER_SEED), {},
     "wrong_tenant"),
    ("another key under this kid", receipt_format.sign(PAYLOAD, kid="k1", private_key=OTHER_SEED), {},
     "bad_signature"),
    ("unknown kid", _edit(lambda r: r.update(kid="k9")), {}, "unknown_key"),
    ("payload edited", _edit(lambda r: r["payload"].update(deciders=["U3"])), {}, "bad_signature"),
    ("rejected", receipt_format.sign({**PAYLOAD, "outcome": "rejected"}, kid="k1", private_key=SEED), {},
     "not_approved"),
    ("expired, approved by on_timeout",
     receipt_format.sign({**PAYLOAD, "status": "expired", "deciders": ["timeout"]}, kid="k1", private_key=SEED), {},
     None),
    ("malformed", _edit(lambda r: r.update(alg="HS256")), {}, "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("receipt", "overrides", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_service_and_the_client_agree_on_every_receipt(
    receipt: dict[str, Any], overrides: dict[str, Any], reason: str | None
) -> None:
    args: dict[str, Any] = {"action": "refund", "params": PARAMS, "now": NOW, **overrides}
    try:
        receipt_format.verify(receipt, keys=SERVER_KEYS, **args)
        server = None
    except receipt_format.ReceiptInvalid as exc:
        server = exc.code
    try:
        client.verify_receipt(receipt, public_keys=CLIENT_KEYS, **args)
        client_says = None
    except client.ReceiptInvalid as exc:
        client_says = exc.reason
    assert (server, client_says) == (reason, reason)


def _resource(status: Status, outcome: Status, by: str, votes: list[tuple[str, Choice]]) -> RequestOut:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return RequestOut(
        id="r1", tenant="acme", action="refund", status=status, mode=Mode.SYNC, stage=0, pool="p",
        approvals_required=2, votes=[VoteOut(user=u, vote=c, reason=None, at=at) for u, c in votes],
        decision=DecisionOut(outcome=outcome, by=by, reason=None, at=at, params_sha256="x"),
        undo_operation=None, deadline_at=None, created_at=at - timedelta(minutes=1),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "outcome", "by", "votes", "expected"),
    [
        (Status.APPROVED, Status.APPROVED, "U2", [("U1", Choice.APPROVE), ("U2", Choice.APPROVE)], ["U1", "U2"]),
        (Status.REJECTED, Status.REJECTED, "U2", [("U1", Choice.APPROVE), ("U2", Choice.REJECT)], ["U2"]),
        (Status.AUTO_APPROVED, Status.AUTO_APPROVED, "policy", [], ["policy"]),
        (Status.DENIED, Status.DENIED, "policy", [], ["policy"]),
        (Status.REJECTED, Status.REJECTED, "policy", [("U1", Choice.APPROVE)], ["policy"]),
        (Status.EXPIRED, Status.APPROVED, "timeout", [("U1", Choice.APPROVE)], ["timeout"]),
        (Status.CANCELLED, Status.CANCELLED, "agent", [], ["agent"]),
    ],
)
def test_the_deciders_are_whose_votes_made_the_outcome(
    status: Status, outcome: Status, by: str, votes: list[tuple[str, Choice]], expected: list[str]
) -> None:
    assert deciders(_resource(status, outcome, by, votes)) == expected
