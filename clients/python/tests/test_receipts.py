"""``countersign_client.receipts``: checking a decision receipt offline, no service needed.

``VECTOR`` was signed by the service's own code (bot.service.receipt_format) with the seed bytes 0..31: it
pins the format across the two implementations. The service's suite also checks the two against each other
on generated params (tests/bot/test_receipts.py).
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("cryptography", reason="receipts need the extra: pip install 'countersign-client[receipts]'")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from countersign_client import Decision, ReceiptInvalid, verify_receipt
from countersign_client.models import ApprovalRequest
from countersign_client.receipts import EVERY_OUTCOME, canonical_json, load_public_keys, params_sha256

PUBLIC = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
KID = "rk_20260101_000000000000"
PARAMS: dict[str, Any] = {"amount": 620.5, "customer": {"name": "Zoë", "tags": ["ü", 1, None, True]}, "order_id": "A-1"}
VECTOR: dict[str, Any] = {
    "v": 1, "alg": "Ed25519", "kid": KID,
    "payload": {
        "request_id": "req1", "tenant": "acme-support", "action": "process_refund",
        "params_sha256": "96446f76b57487399092dd62b4026d383903ea79b50bc8c0f1c482cb4ccaf550",
        "outcome": "approved", "status": "approved", "deciders": ["U0BEN"], "policy_version": "0123456789abcdef.3",
        "audit_seq": 42, "issued_at": "2026-01-01T10:00:01Z", "expires_at": "2026-01-01T10:15:00Z",
    },
    "sig": "p-IdrcZLTRt1GWS0r31wE7NUw_aSo1iWDCS8UahBDvxAJGdOxH5sig673LXj2FDi8etS8N2bpiJAalPCAc0eBA",
}  # fmt: skip
KEYS = {"keys": [{"kid": KID, "tenant": "acme-support", "alg": "Ed25519", "public_key": PUBLIC}]}
NOW = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def resign(receipt: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    unsigned = {k: v for k, v in receipt.items() if k != "sig"}
    return {**unsigned, "sig": b64url(key.sign(canonical_json(unsigned).encode()))}


def check(receipt: dict[str, Any] = VECTOR, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {"action": "process_refund", "params": PARAMS, "public_keys": KEYS, "now": NOW}
    return verify_receipt(receipt, **{**kwargs, **overrides})


def test_the_service_s_receipt_verifies_and_says_what_was_decided() -> None:
    ok = check()
    assert (ok.request_id, ok.tenant, ok.outcome, ok.deciders, ok.audit_seq) == (
        "req1", "acme-support", "approved", ("U0BEN",), 42,
    )  # fmt: skip
    assert ok.expires_at == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert params_sha256("process_refund", PARAMS) == VECTOR["payload"]["params_sha256"]
    # Key order, and how the keys are handed over, do not matter.
    reordered = {"order_id": "A-1", "customer": {"tags": ["ü", 1, None, True], "name": "Zoë"}, "amount": 620.5}
    assert check(params=reordered, public_keys={KID: PUBLIC}).request_id == "req1"
    assert check(public_keys=KEYS["keys"], tenant="acme-support").kid == KID
    raw = base64.urlsafe_b64decode(PUBLIC + "=")
    assert check(public_keys={KID: raw}).kid == KID


def _tampered(change: Any) -> dict[str, Any]:
    receipt = copy.deepcopy(VECTOR)
    change(receipt)
    return receipt


OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER_KEYS = {
    "keys": [{"kid": "rk_other", "tenant": "platform", "public_key": b64url(OTHER.public_key().public_bytes_raw())}]
}

REFUSED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("one second after expiry", VECTOR, {"now": datetime(2026, 1, 1, 10, 15, 1, tzinfo=UTC)}, "expired"),
    ("at the expiry", VECTOR, {"now": datetime(2026, 1, 1, 10, 15, tzinfo=UTC)}, "expired"),
    ("one byte of params changed", VECTOR, {"params": {**PARAMS, "order_id": "A-2"}}, "params_mismatch"),
    ("a number's spelling changed", VECTOR, {"params": {**PARAMS, "amount": 620.50000001}}, "params_mismatch"),
    ("another action", VECTOR, {"action": "close_account"}, "action_mismatch"),
    ("another tenant's keys", VECTOR, {"public_keys": OTHER_KEYS}, "unknown_key"),
    ("another tenant asked for", VECTOR, {"tenant": "platform"}, "wrong_tenant"),
    ("a payload edited", _tampered(lambda r: r["payload"].update(audit_seq=43)), {}, "bad_signature"),
    ("the outcome edited", _tampered(lambda r: r["payload"].update(outcome="auto_approved")), {}, "bad_signature"),
    ("the kid edited", _tampered(lambda r: r.update(kid="rk_other")), {"public_keys": {"rk_other": PUBLIC}},
     "bad_signature"),
    ("a sig that is not base64", _tampered(lambda r: r.update(sig="!!")), {}, "bad_signature"),
    ("no signature", _tampered(lambda r: r.pop("sig")), {}, "malformed"),
    ("another version", _tampered(lambda r: r.update(v=2)), {}, "malformed"),
    ("a payload field missing", _tampered(lambda r: r["payload"].pop("expires_at")), {}, "malformed"),
    ("issued in the future", VECTOR, {"now": datetime(2026, 1, 1, 9, 50, tzinfo=UTC)}, "not_yet_valid"),
]  # fmt: skip


@pytest.mark.parametrize(("receipt", "overrides", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_receipt_is_refused(receipt: dict[str, Any], overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ReceiptInvalid) as refused:
        check(receipt, **overrides)
    assert refused.value.reason == reason


def test_a_key_of_another_tenant_is_refused_even_with_a_good_signature() -> None:
    forged = resign({**copy.deepcopy(VECTOR), "kid": "rk_other"}, OTHER)
    with pytest.raises(ReceiptInvalid) as refused:
        check(forged, public_keys=OTHER_KEYS)
    assert refused.value.reason == "wrong_tenant"
    # Keys pinned without their tenant: the signature holds, so say which tenant you expect.
    assert check(forged, public_keys={"rk_other": OTHER_KEYS["keys"][0]["public_key"]}).kid == "rk_other"
    with pytest.raises(ReceiptInvalid):
        check(forged, public_keys={"rk_other": OTHER_KEYS["keys"][0]["public_key"]}, tenant="platform")


@pytest.mark.parametrize(
    ("outcome", "status", "accepted"),
    [("approved", "approved", True), ("auto_approved", "auto_approved", True), ("approved", "expired", True),
     ("rejected", "expired", False), ("rejected", "rejected", False), ("denied", "denied", False),
     ("cancelled", "cancelled", False)],
)  # fmt: skip
def test_only_approvals_are_accepted_unless_asked(outcome: str, status: str, accepted: bool) -> None:
    receipt = copy.deepcopy(VECTOR)
    receipt["payload"].update(outcome=outcome, status=status)
    receipt = resign(receipt, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    if accepted:
        assert check(receipt).outcome == outcome
    else:
        with pytest.raises(ReceiptInvalid) as refused:
            check(receipt)
        assert refused.value.reason == "not_approved"
    assert check(receipt, outcomes=EVERY_OUTCOME).status == status


def test_the_clock_is_used_when_now_is_not_given() -> None:
    with pytest.raises(ReceiptInvalid) as refused:
        verify_receipt(VECTOR, action="process_refund", params=PARAMS, public_keys=KEYS)
    assert refused.value.reason == "expired"  # 2026-01-01 has passed by the time this runs
    fresh = copy.deepcopy(VECTOR)
    soon = datetime.now(UTC) + timedelta(minutes=1)
    fresh["payload"]["expires_at"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh["payload"]["issued_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = resign(fresh, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    assert verify_receipt(fresh, action="process_refund", params=PARAMS, public_keys=KEYS).audit_seq == 42


def test_keys_in_a_shape_that_is_no_key_set_are_an_error() -> None:
    with pytest.raises(ValueError, match="GET /v1/keys"):
        load_public_keys({"keys": [{"kid": "x"}]})


def test_the_decision_carries_the_receipt() -> None:
    data = {"id": "req1", "status": "approved",
            "decision": {"outcome": "approved", "by": "U0BEN", "reason": None, "at": "2026-01-01T10:00:00Z",
                         "params_sha256": VECTOR["payload"]["params_sha256"], "receipt": VECTOR}}  # fmt: skip
    decision = ApprovalRequest.from_json(data).decision
    assert isinstance(decision, Decision) and decision.receipt == VECTOR
    unsealed = ApprovalRequest.from_json({**data, "decision": {**data["decision"], "receipt": None}}).decision
    assert unsealed is not None and unsealed.receipt is None
