"""Check a decision receipt offline, before running the action it approves (docs/receipts.md).

::

    from countersign_client.receipts import verify_receipt, ReceiptInvalid

    keys = cs.public_keys()                 # GET /v1/keys, once; or saved to a file and pinned
    verify_receipt(answer.decision.receipt, action="process_refund", params=params, public_keys=keys)

Needs the ``cryptography`` package (``pip install 'countersign-client[receipts]'``). The digest of the
action and params is computed here exactly as the service computes it (canonical JSON: sorted keys,
no spaces, UTF-8 kept, Python's number spelling), so no call to the service is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

VERSION = 1
ALG = "Ed25519"
# What an executor may act on: approved by people or the policy (an expired request whose
# on_timeout approves has outcome "approved" too).
GO_AHEAD = frozenset({"approved", "auto_approved"})
EVERY_OUTCOME = frozenset({"approved", "auto_approved", "rejected", "denied", "cancelled"})
_PAYLOAD = ("request_id", "tenant", "action", "params_sha256", "outcome", "status", "deciders", "policy_version",
            "audit_seq", "issued_at", "expires_at")  # fmt: skip
_SKEW = timedelta(minutes=5)  # a receipt issued further than this in the future is refused


class ReceiptInvalid(Exception):
    """The receipt must not be acted on. ``reason`` is a code (``expired``, ``params_mismatch``,
    ``bad_signature``, ``unknown_key``, ``wrong_tenant``, ``not_approved``, ...); the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt that holds: what was decided, by whom, and until when it may be acted on."""

    request_id: str
    tenant: str
    action: str
    outcome: str
    status: str
    deciders: tuple[str, ...]
    policy_version: str
    audit_seq: int
    kid: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class PublicKey:
    kid: str
    raw: bytes  # the 32-byte Ed25519 public key
    tenant: str | None = None


def canonical_json(value: Any) -> str:
    """The service's canonical JSON (``policy.canonical_json``): sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def params_sha256(action: str, params: Mapping[str, Any]) -> str:
    """The service's ``params_sha256``: hex sha256 of the canonical JSON of ``{action, params}``."""
    return hashlib.sha256(canonical_json({"action": action, "params": params}).encode()).hexdigest()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_public_keys(keys: Any) -> dict[str, PublicKey]:
    """Public keys by kid, from the JSON of ``GET /v1/keys`` (or its ``keys`` list), a mapping of kid to
    base64url text or raw bytes, or :class:`PublicKey` values.

    Raises:
        ValueError: something that is none of those.
    """
    if isinstance(keys, Mapping) and isinstance(keys.get("keys"), list):
        keys = keys["keys"]
    found: dict[str, PublicKey] = {}
    try:
        if isinstance(keys, Mapping):
            for kid, value in keys.items():
                raw = value.raw if isinstance(value, PublicKey) else value
                found[str(kid)] = PublicKey(str(kid), raw if isinstance(raw, bytes) else _unb64url(str(raw)))
            return found
        for entry in keys if isinstance(keys, Iterable) else ():
            if isinstance(entry, PublicKey):
                found[entry.kid] = entry
            else:
                kid = str(entry["kid"])
                found[kid] = PublicKey(kid, _unb64url(str(entry["public_key"])), entry.get("tenant"))
    except (KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise ValueError(f"public keys must be GET /v1/keys' JSON or {{kid: base64url}}: {exc}") from exc
    return found


def _time(payload: Mapping[str, Any], name: str) -> datetime:
    try:
        at = datetime.fromisoformat(str(payload[name]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReceiptInvalid("malformed", f"payload.{name} is not a time") from exc
    if at.tzinfo is None:
        raise ReceiptInvalid("malformed", f"payload.{name} has no time zone")
    return at


def _check_signature(receipt: Mapping[str, Any], key: PublicKey) -> None:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("checking receipts needs cryptography: pip install 'countersign-client[receipts]'") from exc
    signed = canonical_json({k: v for k, v in receipt.items() if k != "sig"}).encode()
    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(_unb64url(str(receipt["sig"])), signed)
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise ReceiptInvalid("bad_signature", f"the signature does not verify with key {key.kid!r}") from exc


def verify_receipt(
    receipt: Mapping[str, Any],
    *,
    action: str,
    params: Mapping[str, Any],
    public_keys: Any,
    now: datetime | None = None,
    tenant: str | None = None,
    outcomes: Iterable[str] = GO_AHEAD,
) -> VerifiedReceipt:
    """Check that ``receipt`` approves running ``action`` with exactly ``params`` at ``now`` (default: the clock).

    ``public_keys``: see :func:`load_public_keys`; pin them (fetch once, keep them) rather than trusting a
    key handed over with the receipt. ``tenant``: refuse a receipt of any other tenant. ``outcomes``: the
    decisions to accept (default approved and auto_approved; pass ``EVERY_OUTCOME`` to read a refusal).

    Raises:
        ReceiptInvalid: it does not hold; ``reason`` says why.
    """
    if not isinstance(receipt, Mapping) or receipt.get("v") != VERSION or receipt.get("alg") != ALG:
        raise ReceiptInvalid("malformed", f"not a version {VERSION} {ALG} receipt")
    payload, kid = receipt.get("payload"), receipt.get("kid")
    if not isinstance(payload, Mapping) or not isinstance(kid, str) or not isinstance(receipt.get("sig"), str):
        raise ReceiptInvalid("malformed", "a receipt has a payload object and kid and sig strings")
    missing = [name for name in _PAYLOAD if name not in payload]
    if missing:
        raise ReceiptInvalid("malformed", f"the payload lacks {', '.join(missing)}")
    key = load_public_keys(public_keys).get(kid)
    if key is None:
        raise ReceiptInvalid("unknown_key", f"no public key {kid!r} among the keys given")
    if key.tenant is not None and key.tenant != payload["tenant"]:
        raise ReceiptInvalid("wrong_tenant", f"key {kid!r} is tenant {key.tenant!r}'s, not {payload['tenant']!r}'s")
    if tenant is not None and payload["tenant"] != tenant:
        raise ReceiptInvalid("wrong_tenant", f"the receipt is for tenant {payload['tenant']!r}, not {tenant!r}")
    _check_signature(receipt, key)
    if payload["action"] != action:
        raise ReceiptInvalid("action_mismatch", f"the receipt is for action {payload['action']!r}, not {action!r}")
    if payload["params_sha256"] != params_sha256(action, params):
        raise ReceiptInvalid("params_mismatch", "the params differ from the ones decided on (params_sha256)")
    if payload["outcome"] not in frozenset(outcomes):
        raise ReceiptInvalid("not_approved", f"the decision was {payload['outcome']!r}")
    now = now or datetime.now(UTC)
    issued_at, expires_at = _time(payload, "issued_at"), _time(payload, "expires_at")
    if now >= expires_at:
        raise ReceiptInvalid("expired", f"the receipt expired at {payload['expires_at']}")
    if now < issued_at - _SKEW:
        raise ReceiptInvalid("not_yet_valid", f"the receipt is issued at {payload['issued_at']}, after now")
    return VerifiedReceipt(
        request_id=str(payload["request_id"]),
        tenant=str(payload["tenant"]),
        action=str(payload["action"]),
        outcome=str(payload["outcome"]),
        status=str(payload["status"]),
        deciders=tuple(str(d) for d in payload["deciders"]),
        policy_version=str(payload["policy_version"]),
        audit_seq=int(payload["audit_seq"]),
        kid=kid,
        issued_at=issued_at,
        expires_at=expires_at,
    )
