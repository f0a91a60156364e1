"""A scripted stand-in for the Countersign service, for httpx.MockTransport (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


def resource(status: str = "pending", *, mode: str = "sync", rid: str = "r1", **decision: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "tenant": "acme",
        "action": "process_refund",
        "status": status,
        "mode": mode,
        "stage": 0,
        "pool": "tier1",
        "approvals_required": 1,
        "votes": [],
        "decision": None,
        "undo_operation": None,
        "deadline_at": None,
        "created_at": "2026-12-02T10:00:00Z",
    }
    if decision:
        body["decision"] = {"at": "2026-12-02T10:00:05Z", "params_sha256": "0" * 64, **decision}
    return body


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeService:
    """Answers calls in order from ``answers``; records every request it saw."""

    answers: list[Answer]
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) if r.content else {} for r in self.seen]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def ok(body: dict[str, Any], status: int | None = None) -> httpx.Response:
    return httpx.Response(status or (202 if body["status"] == "pending" else 200), json=body)


def err(status: int, code: str, message: str = "no", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def sign(secret: str, body: bytes, at: int) -> str:
    """The service's signing scheme, written from its contract (docs/api.md), not imported."""
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"
