"""The chain's exact format: what each link hashes, and an audit event as read back.

Each sealed event links to the one before it in its tenant's chain::

    hash = sha256(prev_hash || canonical_json(event))

where ``prev_hash`` is the previous event's hex hash (64 zeros for the first event), ``||``
is concatenation of the ASCII hex text and the UTF-8 JSON, and ``event`` is the object
``{"tenant", "seq", "kind", "request_id", "actor", "at", "payload"}`` with ``at`` in
ISO 8601 UTC (``2025-01-31T09:30:00.000000Z``). ``seq`` starts at 1 and has no gaps.

The format is the same whether an event was chained by the writer (before migration 0003) or
sealed by the sequencer: old chains go on where they ended. See store/README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_basestring
from typing import Any

from policy.sensitive import canonical_json

GENESIS_HASH = "0" * 64
# The chain of events no tenant vouches for. The dot keeps the name out of ``[a-z0-9_-]``, the
# pattern every manifest (policy.models.NAME) and stored tenant name (store.tenants.check_name)
# must match: no tenant can ever be called this, so nothing of a tenant lands in it or reads it.
SYSTEM_CHAIN = ".system"
# An anchor's hash: the full 64 hex digits, or a prefix no shorter than the 12 verify used to print.
ANCHOR_HASH = re.compile(r"[0-9a-fA-F]{12,64}")


def format_at(at: datetime) -> str:
    """The ISO 8601 UTC spelling of a time used inside the hash (microseconds, ``Z``)."""
    if at.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    prev_hash: str,
    *,
    tenant: str,
    seq: int,
    kind: str,
    request_id: str | None,
    actor: str | None,
    at: str,
    payload: Any,
) -> str:
    """``sha256(prev_hash || canonical_json(event))`` as hex (see the module docstring)."""
    event = {
        "tenant": tenant,
        "seq": seq,
        "kind": kind,
        "request_id": request_id,
        "actor": actor,
        "at": at,
        "payload": payload,
    }
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


def row_hash(
    tenant: str,
    seq: int,
    prev_hash: str,
    kind: str,
    request_id: str | None,
    actor: str | None,
    at: datetime | str,
    payload: str,
) -> str:
    """The hash a stored row should carry, by the definition: its payload text parsed and re-spelled.

    Args:
        at: a datetime, or SQLite's stored text (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC).
        payload: the stored payload text; if it is not JSON the result is ``""``, which matches no hash.
    """
    at_text = sqlite_at(at) if isinstance(at, str) else format_at(at)
    try:
        parsed = json.loads(payload)
    except ValueError:
        return ""
    return event_hash(
        prev_hash, tenant=tenant, seq=seq, kind=kind, request_id=request_id, actor=actor, at=at_text, payload=parsed
    )


def spliced_event(
    tenant_json: str, seq: int, kind: str, request_id: str | None, actor: str | None, at: str, payload: str
) -> str:
    """``canonical_json(event)`` built around a payload text that is already canonical JSON.

    Keys in sorted order, strings spelled as ``json.dumps(ensure_ascii=False)`` spells them: the
    same text as the definition whenever ``payload`` is canonical, without parsing it. Verify
    hashes this and falls back to :func:`row_hash` when it does not match.
    """
    return (
        f'{{"actor":{json_str(actor)},"at":"{at}","kind":{json_str(kind)},"payload":{payload},'
        f'"request_id":{json_str(request_id)},"seq":{seq},"tenant":{tenant_json}}}'
    )


def sqlite_at(text: str) -> str:
    """SQLite's stored time text (naive UTC) in the hashed spelling; other text is returned as is."""
    if len(text) == 26 and text[10] == " ":  # what SQLite stores: the fast path
        return f"{text[:10]}T{text[11:]}Z"
    try:
        return format_at(datetime.fromisoformat(text).replace(tzinfo=UTC))
    except ValueError:
        return text


def json_str(value: str | None) -> str:
    # What json.dumps(..., ensure_ascii=False) writes for a str or None.
    return "null" if value is None else _encode_basestring(value)


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as read back (``payload`` parsed).

    ``seq``, ``prev_hash`` and ``hash`` are None while the event is unsealed: committed with its
    state change, not yet linked into the chain by the sequencer.
    """

    tenant: str
    seq: int | None
    prev_hash: str | None
    hash: str | None
    kind: str
    request_id: str | None
    actor: str | None
    at: datetime
    payload: dict[str, Any]

    @property
    def sealed(self) -> bool:
        return self.seq is not None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``at`` in the hashed spelling), as exported."""
        return {
            "tenant": self.tenant,
            "seq": self.seq,
            "kind": self.kind,
            "request_id": self.request_id,
            "actor": self.actor,
            "at": format_at(self.at),
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def record_of(row: Any) -> AuditRecord:
    """An event as read back: a row of ``audit_event`` (or of the union with ``audit_unsealed``)."""
    return AuditRecord(
        tenant=row.tenant,
        seq=row.seq,
        prev_hash=row.prev_hash,
        hash=row.hash,
        kind=row.kind,
        request_id=row.request_id,
        actor=row.actor,
        at=row.at,
        payload=json.loads(row.payload),
    )
