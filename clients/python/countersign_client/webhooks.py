"""For the agent's own webhook receiver: check a decision callback's signature, run undo handlers.

Countersign signs each callback with the tenant's callback secret::

    X-Countersign-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from countersign_client.errors import CountersignError
from countersign_client.models import ApprovalRequest

SIGNATURE_HEADER = "X-Countersign-Signature"
TOLERANCE = 300.0  # seconds a signature stays fresh


class BadSignature(CountersignError):
    """A callback that is not signed with the secret, or signed too long ago: answer it 401."""


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: float = TOLERANCE
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of ``now``."""
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def parse_callback(secret: str, body: bytes, signature: str, *, now: float | None = None) -> ApprovalRequest:
    """The decided request a callback carries. Raises ``BadSignature`` unless it is signed and fresh."""
    if not verify_signature(secret, signature, body, now=now):
        raise BadSignature("bad or stale Countersign signature")
    return ApprovalRequest.from_json(json.loads(body))


UndoHandler = Callable[[ApprovalRequest], Any]


@dataclass
class CallbackReceiver:
    """Runs the undo handler registered for an async request when a human rejects it after the fact.

    Callbacks are delivered at least once: a handler runs once per request id per receiver.
    """

    secret: str
    pending: dict[str, UndoHandler] = field(default_factory=dict)

    def register(self, request_id: str, on_rejected: UndoHandler) -> None:
        self.pending[request_id] = on_rejected

    def handle(self, body: bytes, signature: str, *, now: float | None = None) -> ApprovalRequest:
        """Verify one callback and run its undo handler if it was not approved. Raises ``BadSignature``."""
        request, undo = self._open(body, signature, now)
        if undo is not None:
            undo(request)
        return request

    async def handle_async(self, body: bytes, signature: str, *, now: float | None = None) -> ApprovalRequest:
        """``handle`` that awaits undo handlers that are coroutine functions."""
        request, undo = self._open(body, signature, now)
        if undo is not None:
            result = undo(request)
            if inspect.isawaitable(result):
                await result
        return request

    def _open(self, body: bytes, signature: str, now: float | None) -> tuple[ApprovalRequest, UndoHandler | None]:
        request = parse_callback(self.secret, body, signature, now=now)
        handler = self.pending.pop(request.id, None)
        return request, handler if handler is not None and not request.approved else None
