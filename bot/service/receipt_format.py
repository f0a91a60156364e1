"""The receipt format: what is signed, how, and how it is checked. Pure: no store, no clock (docs/receipts.md).

A receipt is ``{"v": 1, "alg": "Ed25519", "kid": ..., "payload": {...}, "sig": ...}``; ``sig`` is the
base64url (no padding) Ed25519 signature of the canonical JSON (sorted keys, no spaces, UTF-8) of the
receipt without ``sig``, so the version, algorithm and key id are signed with the payload. The agent
client has its own copy of the checking half (``countersign_client.receipts``), tested against this one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policy import canonical_json, params_sha256

VERSION = 1
ALG = "Ed25519"
# What an executor may act on: approved by people or the policy, or expired where on_timeout approves.
# A receipt issued this far in the verifier's future is refused (clocks disagree by less than that).
_SKEW = timedelta(minutes=5)
GO_AHEAD = frozenset({"approved", "auto_approved"})
PAYLOAD_KEYS = frozenset(
    {"request_id", "tenant", "action", "params_sha256", "outcome", "status", "deciders", "policy_version",
     "audit_seq", "issued_at", "expires_at"}
)  # fmt: skip


class ReceiptInvalid(Exception):
    """A receipt that must not be acted on. ``code`` names the reason; the message says it in words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    tenant: str | None
    raw: bytes  # the 32-byte Ed25519 public key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Raises ValueError for text that is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from exc


def timestamp(at: datetime) -> str:
    """The payload's spelling of a time: RFC 3339, UTC, whole seconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_key() -> tuple[str, str]:
    """A fresh key pair: (private seed, public key), each base64url of 32 raw bytes."""
    private = Ed25519PrivateKey.generate()
    return b64url(private.private_bytes_raw()), b64url(private.public_key().public_bytes_raw())


def signed_bytes(receipt: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in receipt.items() if k != "sig"}).encode()


def sign(payload: Mapping[str, Any], *, kid: str, private_key: str) -> dict[str, Any]:
    """The receipt of ``payload``, signed with the base64url seed ``private_key``."""
    receipt: dict[str, Any] = {"v": VERSION, "alg": ALG, "kid": kid, "payload": dict(payload)}
    key = Ed25519PrivateKey.from_private_bytes(unb64url(private_key))
    receipt["sig"] = b64url(key.sign(signed_bytes(receipt)))
    return receipt


def _time(payload: Mapping[str, Any], name: str) -> datetime:
    value = payload.get(name)
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReceiptInvalid("malformed", f"payload.{name} is not a time: {value!r}") from exc
    if at.tzinfo is None:
        raise ReceiptInvalid("malformed", f"payload.{name} has no time zone: {value!r}")
    return at


def verify(
    receipt: Mapping[str, Any],
    *,
    keys: Mapping[str, PublicKey],
    action: str,
    params: Mapping[str, Any],
    now: datetime,
    tenant: str | None = None,
    outcomes: frozenset[str] = GO_AHEAD,
) -> dict[str, Any]:
    """Check that ``receipt`` lets one run ``action`` with ``params`` at ``now``; returns its payload.

    Raises:
        ReceiptInvalid: malformed, unknown_key, wrong_tenant, bad_signature, expired, not_yet_valid,
            action_mismatch, params_mismatch or not_approved.
    """
    if not isinstance(receipt, Mapping) or receipt.get("v") != VERSION or receipt.get("alg") != ALG:
        raise ReceiptInvalid("malformed", f"not a version {VERSION} {ALG} receipt")
    payload, kid, sig = receipt.get("payload"), receipt.get("kid"), receipt.get("sig")
    if not isinstance(payload, Mapping) or not isinstance(kid, str) or not isinstance(sig, str):
        raise ReceiptInvalid("malformed", "a receipt has a payload object and kid and sig strings")
    missing = sorted(PAYLOAD_KEYS - set(payload))
    if missing:
        raise ReceiptInvalid("malformed", f"the payload lacks {', '.join(missing)}")
    key = keys.get(kid)
    if key is None:
        raise ReceiptInvalid("unknown_key", f"no public key {kid!r} among the keys given")
    if key.tenant is not None and key.tenant != payload["tenant"]:
        raise ReceiptInvalid(
            "wrong_tenant", f"key {kid!r} is tenant {key.tenant!r}'s, the receipt says {payload['tenant']!r}"
        )
    if tenant is not None and payload["tenant"] != tenant:
        raise ReceiptInvalid("wrong_tenant", f"the receipt is for tenant {payload['tenant']!r}, not {tenant!r}")
    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(unb64url(sig), signed_bytes(receipt))
    except (InvalidSignature, ValueError) as exc:
        raise ReceiptInvalid("bad_signature", f"the signature does not verify with key {kid!r}") from exc
    if payload["action"] != action:
        raise ReceiptInvalid("action_mismatch", f"the receipt is for action {payload['action']!r}, not {action!r}")
    if payload["params_sha256"] != params_sha256(action, params):
        raise ReceiptInvalid("params_mismatch", "the params differ from the ones decided on (params_sha256)")
    if payload["outcome"] not in outcomes:
        raise ReceiptInvalid("not_approved", f"the decision was {payload['outcome']!r}")
    expires_at = _time(payload, "expires_at")
    if now >= expires_at:
        raise ReceiptInvalid("expired", f"the receipt expired at {payload['expires_at']}")
    if now < _time(payload, "issued_at") - _SKEW:
        raise ReceiptInvalid("not_yet_valid", f"the receipt is issued at {payload['issued_at']}, after now")
    return dict(payload)
