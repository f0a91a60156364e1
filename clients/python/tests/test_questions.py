"""ask_question against a scripted service: one idempotency key, long polls until answered, a typed answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from countersign_client import ApiError, Question, Unreachable

from .fakes import FakeService, err, ok
from .test_client import Both, both


def question(status: str = "pending", **answer: Any) -> dict[str, Any]:
    return {
        "id": "q1", "kind": "question", "tenant": "acme", "question": "Ship today?", "choices": ["Yes", "No"],
        "status": status, "mode": "sync", "pool": "tier1",
        "answer": {"at": "2026-12-02T10:00:05Z", **answer} if answer else None,
        "deadline_at": None, "closed_at": None, "created_at": "2026-12-02T10:00:00Z",
    }  # fmt: skip


@both
def test_ask_question_waits_for_the_answer_through_long_polls(kind: str) -> None:
    service = FakeService(
        [
            httpx.ConnectError("refused"),
            ok(question()),
            ok(question()),
            ok(question("answered", text="No", choice=1, by="U0BEN")),
        ]
    )
    got: Question = Both(kind, service)("ask_question", "Ship today?", ["Yes", "No"], context={"reason": "train"})
    assert (got.status, got.answered, got.pending) == ("answered", True, False)
    assert got.answer is not None and (got.answer.text, got.answer.choice, got.answer.by) == ("No", 1, "U0BEN")
    posted = service.bodies()[:2]
    assert posted[0] == posted[1]  # the retry after no answer sends the same key: one question, not two
    assert posted[0]["question"] == "Ship today?" and posted[0]["choices"] == ["Yes", "No"]
    assert posted[0]["idempotency_key"].startswith("cs-") and posted[0]["context"] == {"reason": "train"}
    assert [r.url.path for r in service.seen] == ["/v1/questions"] * 2 + ["/v1/questions/q1"] * 2
    assert all(r.headers["Prefer"] == "wait=60" for r in service.seen)


@both
def test_ask_question_with_no_wait_returns_it_pending(kind: str) -> None:
    service = FakeService([ok(question())])
    got = Both(kind, service)("ask_question", "Ship today?", pool="tier2", timeout_seconds=600, wait=0)
    assert got.pending and got.answer is None and got.choices == ["Yes", "No"]
    body = service.bodies()[0]
    assert (body["pool"], body["timeout_seconds"], "choices" in body) == ("tier2", 600, False)
    assert "Prefer" not in service.seen[0].headers


@both
def test_a_refused_question_is_an_api_error(kind: str) -> None:
    service = FakeService([err(422, "no_pool", "name the pool")])
    with pytest.raises(ApiError) as refused:
        Both(kind, service)("ask_question", "Who?")
    assert (refused.value.status, refused.value.code) == (422, "no_pool")


@both
def test_cancel_question_withdraws_it_once_and_is_not_resent(kind: str) -> None:
    withdrawn = {**question("cancelled"), "closed_at": "2026-12-02T10:00:03Z"}
    service = FakeService([ok(withdrawn), err(409, "conflict", "question 'q1' is already cancelled")])
    client = Both(kind, service)
    got: Question = client("cancel_question", "q1")
    assert (got.id, got.status, got.pending, got.answered, got.answer) == ("q1", "cancelled", False, False, None)
    assert got.closed_at is not None
    sent = service.seen[0]
    assert (sent.method, sent.url.path, service.bodies()[0]) == ("POST", "/v1/questions/q1/cancel", {})
    assert "Prefer" not in sent.headers
    with pytest.raises(ApiError) as refused:
        client("cancel_question", "q1")
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    once = FakeService([httpx.ReadTimeout("slow")])
    with pytest.raises(Unreachable):
        Both(kind, once)("cancel_question", "q1")
    assert len(once.seen) == 1  # a cancel that may have happened is not sent again
