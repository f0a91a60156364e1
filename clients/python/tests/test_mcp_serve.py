"""``countersign-mcp serve``: the ``request_approval`` tool, driven by the SDK's own client in-process.

No Countersign server and no network: ``FakeCountersign`` answers the agent API through
``httpx.MockTransport`` and a test decides its pending requests.
"""

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
from countersign_client.mcp.cli import main

REFUND = {"amount": 620, "currency": "EUR", "order_id": "A-1"}


@dataclass
class FakeCountersign:
    """The agent API in memory. ``outcomes`` maps an action to auto_approved / denied; anything else is pending."""

    outcomes: dict[str, str] = field(default_factory=dict)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    gets: int = 0
    down: bool = False
    _decided: dict[str, asyncio.Event] = field(default_factory=dict)

    def client(self, **kw: Any) -> AsyncCountersign:
        return AsyncCountersign("http://countersign.test", "cs_test_key", transport=httpx.MockTransport(self), **kw)

    def decide(self, rid: str, status: str, *, by: str = "U0BEN", reason: str | None = None, **extra: Any) -> None:
        outcome = "rejected" if status == "rejected" else "approved"
        self.requests[rid].update(
            status=status,
            decision={"outcome": outcome, "by": by, "reason": reason, "at": None, "params_sha256": "x", **extra},
        )
        self._decided[rid].set()

    async def pending(self, timeout: float = 5) -> str:
        """The id of the newest pending request, once there is one."""
        async with asyncio.timeout(timeout):
            while True:
                ids = [rid for rid, r in self.requests.items() if r["status"] == "pending"]
                if ids:
                    return ids[-1]
                await asyncio.sleep(0.01)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        wait = int(request.headers.get("Prefer", "wait=0").split("=")[1])
        if request.method == "POST" and request.url.path == "/v1/requests":
            body = json.loads(request.content)
            self.bodies.append(body)
            rid = f"r{len(self.requests) + 1}"
            status = self.outcomes.get(body["action"], "pending")
            decision = None
            if status != "pending":
                outcome = "approved" if status == "auto_approved" else status
                decision = {"outcome": outcome, "by": "policy", "reason": f"{status} by rule", "at": None}
            self.requests[rid] = {
                "id": rid,
                "tenant": "acme-support",
                "action": body["action"],
                "status": status,
                "mode": "sync",
                "pool": "support_tier_1" if status == "pending" else None,
                "approvals_required": 1,
                "votes": [],
                "decision": decision,
            }
            self._decided[rid] = asyncio.Event()
            return httpx.Response(202 if status == "pending" else 200, json=self.requests[rid])
        rid = request.url.path.rsplit("/", 1)[1]
        self.gets += 1
        if self.requests[rid]["status"] == "pending" and wait:
            with contextlib.suppress(TimeoutError):  # the long poll ends undecided
                await asyncio.wait_for(self._decided[rid].wait(), wait)
        resource = self.requests[rid]
        return httpx.Response(202 if resource["status"] == "pending" else 200, json=resource)


@pytest.fixture
def service() -> FakeCountersign:
    return FakeCountersign(outcomes={"lookup_order": "auto_approved", "close_account": "denied"})


def asker(service: FakeCountersign, wait: float = 30) -> Asker:
    return Asker(service.client(max_retries=0), wait=wait, progress_every=0.05)


async def test_the_tool_is_listed_with_an_output_schema(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"request_approval", "ask_human"}
    tool = tools["request_approval"]
    assert tool.name == "request_approval"
    assert tool.input_schema["required"] == ["action", "params"]
    assert tool.output_schema is not None and "proceed" in tool.output_schema["properties"]


async def test_an_auto_approved_action_returns_structured_content(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service))) as client:
        result = await client.call_tool("request_approval", {"action": "lookup_order", "params": {"id": "A-1"}})
    assert not result.is_error
    assert result.structured_content == {
        "proceed": True,
        "status": "auto_approved",
        "outcome": "approved",
        "by": "policy",
        "reason": "auto_approved by rule",
        "params": None,
        "request_id": "r1",
        "mode": "sync",
    }
    assert "approved automatically" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # in-process direct dispatch, and JSON-RPC over streams
async def test_a_rejection_is_an_answer_with_the_reason_and_progress_comes_while_pending(
    service: FakeCountersign, mode: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(build_server(asker(service)), mode=mode) as client:
        call = asyncio.create_task(
            client.call_tool(
                "request_approval",
                {"action": "process_refund", "params": REFUND, "context": {"reason": "charged twice", "x": 1}},
                progress_callback=on_progress,
            )
        )
        rid = await service.pending()
        async with asyncio.timeout(5):
            while len(seen) < 3:
                await asyncio.sleep(0.01)
        service.decide(rid, "rejected", by="U0CHLOE", reason="refunded last week")
        result = await asyncio.wait_for(call, 5)

    assert not result.is_error  # the model reads a "no"; it is not a failure
    assert result.structured_content is not None
    assert result.structured_content["proceed"] is False
    assert result.structured_content["status"] == "rejected"
    assert result.structured_content["reason"] == "refunded last week"
    text = result.content[0].text  # type: ignore[union-attr]
    assert "rejected by U0CHLOE: refunded last week" in text and rid in text
    assert seen[0][2] == f"waiting for a reviewer in support_tier_1 (request {rid})"
    values = [p[0] for p in seen]
    assert values == sorted(values) and len(set(values)) == len(values)  # progress only grows
    assert service.bodies[0]["context"] == {"reason": "charged twice"}  # unknown context fields are dropped


async def test_an_approval_with_edited_params_returns_them(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service))) as client:
        call = asyncio.create_task(client.call_tool("request_approval", {"action": "process_refund", "params": REFUND}))
        service.decide(await service.pending(), "approved", params={**REFUND, "amount": 500})
        result = await asyncio.wait_for(call, 5)
    assert result.structured_content is not None
    assert result.structured_content["proceed"] is True
    assert result.structured_content["params"] == {**REFUND, "amount": 500}
    assert "edited" in result.content[0].text  # type: ignore[union-attr]


async def test_a_denial_by_policy_is_an_answer_too(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service))) as client:
        result = await client.call_tool("request_approval", {"action": "close_account", "params": {}})
    assert not result.is_error
    assert result.structured_content is not None
    assert (result.structured_content["proceed"], result.structured_content["status"]) == (False, "denied")


async def test_when_the_wait_runs_out_asking_again_resumes_the_same_request(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service, wait=1))) as client:
        first = await client.call_tool("request_approval", {"action": "process_refund", "params": REFUND})
        assert first.structured_content is not None
        assert (first.structured_content["status"], first.structured_content["proceed"]) == ("pending", False)
        assert "call request_approval again" in first.content[0].text  # type: ignore[union-attr]
        service.decide("r1", "approved")
        again = await client.call_tool("request_approval", {"action": "process_refund", "params": REFUND})
        assert again.structured_content is not None
        assert (again.structured_content["request_id"], again.structured_content["proceed"]) == ("r1", True)
        # The approval answered that call; the same call later is a new request.
        third = asyncio.create_task(
            client.call_tool("request_approval", {"action": "process_refund", "params": REFUND})
        )
        assert await service.pending() == "r2"
        service.decide("r2", "rejected", reason="once is enough")
        await asyncio.wait_for(third, 5)
    assert len(service.bodies) == 2


async def test_an_unreachable_service_is_an_error_result(service: FakeCountersign) -> None:
    service.down = True
    async with Client(build_server(asker(service))) as client:
        result = await client.call_tool("request_approval", {"action": "process_refund", "params": REFUND})
    assert result.is_error
    assert "Could not get a decision on process_refund" in result.content[0].text  # type: ignore[union-attr]


async def test_bad_arguments_are_an_error_result(service: FakeCountersign) -> None:
    async with Client(build_server(asker(service))) as client:
        result = await client.call_tool("request_approval", {"action": "", "params": {}})
    assert result.is_error and service.bodies == []


@pytest.mark.parametrize("command", [["serve"], ["gate", "--", "true"]])
def test_a_missing_key_is_one_line_and_exit_2(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COUNTERSIGN_API_KEY", raising=False)
    monkeypatch.setenv("COUNTERSIGN_URL", "http://127.0.0.1:9")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err == "countersign-mcp: Countersign needs an API key (--key or $COUNTERSIGN_API_KEY)\n"
