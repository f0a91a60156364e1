"""``countersign-mcp serve``'s ``ask_human`` tool, driven by the SDK's own client against an in-memory service."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytest.importorskip("mcp")

from mcp import Client

from countersign_client import AsyncCountersign
from countersign_client.mcp import Asker, build_server


@dataclass
class FakeQuestions:
    """``/v1/questions`` in memory; a test answers the pending ones."""

    questions: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    _answered: dict[str, asyncio.Event] = field(default_factory=dict)

    def client(self) -> AsyncCountersign:
        return AsyncCountersign(
            "http://countersign.test", "cs_test_key", transport=httpx.MockTransport(self), max_retries=0
        )

    def answer(self, qid: str, text: str, choice: int | None, by: str = "U0BEN") -> None:
        self.questions[qid].update(status="answered", answer={"text": text, "choice": choice, "by": by, "at": None})
        self._answered[qid].set()

    async def pending(self, timeout: float = 5) -> str:
        async with asyncio.timeout(timeout):
            while not (ids := [q for q, r in self.questions.items() if r["status"] == "pending"]):
                await asyncio.sleep(0.01)
        return ids[-1]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        wait = int(request.headers.get("Prefer", "wait=0").split("=")[1])
        if request.method == "POST":
            body = json.loads(request.content)
            self.bodies.append(body)
            qid = f"q{len(self.questions) + 1}"
            self.questions[qid] = {"id": qid, "question": body["question"], "choices": body.get("choices"),
                                   "status": "pending", "mode": "sync", "pool": "support_tier_1", "answer": None}  # fmt: skip
            self._answered[qid] = asyncio.Event()
        else:
            qid = request.url.path.rsplit("/", 1)[1]
        if self.questions[qid]["status"] == "pending" and wait:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered[qid].wait(), min(wait, 1))
        resource = self.questions[qid]
        return httpx.Response(202 if resource["status"] == "pending" else 200, json=resource)


async def test_ask_human_returns_the_persons_answer() -> None:
    service = FakeQuestions()
    async with Client(build_server(Asker(service.client(), wait=30))) as client:
        call = asyncio.create_task(
            client.call_tool("ask_human", {"question": "Ship today?", "choices": ["Yes", "No"], "reason": "train at 5"})
        )
        service.answer(await service.pending(), "No", 1)
        result = await asyncio.wait_for(call, 5)
    assert not result.is_error
    assert result.structured_content == {
        "answered": True, "status": "answered", "answer": "No", "choice": 1, "by": "U0BEN", "question_id": "q1",
    }  # fmt: skip
    assert "U0BEN answered" in result.content[0].text  # type: ignore[union-attr]
    assert service.bodies[0]["context"] == {"reason": "train at 5"} and service.bodies[0]["choices"] == ["Yes", "No"]


async def test_asking_again_after_the_wait_resumes_the_same_question() -> None:
    service = FakeQuestions()
    async with Client(build_server(Asker(service.client(), wait=1))) as client:
        first = await client.call_tool("ask_human", {"question": "Which warehouse?"})
        assert first.structured_content is not None and first.structured_content["status"] == "pending"
        assert "call ask_human again" in first.content[0].text.lower()  # type: ignore[union-attr]
        service.answer("q1", "Porto", None)
        again = await client.call_tool("ask_human", {"question": "Which warehouse?"})
        assert again.structured_content is not None
        assert (again.structured_content["question_id"], again.structured_content["answer"]) == ("q1", "Porto")
        assert len(service.bodies) == 1  # one card, not two
        bad = await client.call_tool("ask_human", {"question": " "})
        assert bad.is_error
