"""The OpenAI Agents adapter in real runs: the SDK's ScriptedModel, and Countersign faked by httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytest.importorskip("agents")
pytest.importorskip("agents.testing")

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from countersign_client import AsyncCountersign
from countersign_client.openai_agents import CountersignApprovals

from .fakes import FakeService, ok, resource

URL, KEY = "http://cs.test", "cs_acme_k"
REFUND = {"amount": 620, "order_id": "A-1"}

ran: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()
    set_tracing_disabled(True)  # no trace export to OpenAI from a test


def refund_tool() -> Any:
    @function_tool
    def refund(amount: int, order_id: str) -> str:
        """Refund a customer's order."""
        ran.append({"amount": amount, "order_id": order_id})
        return f"refunded {amount} for {order_id}"

    return refund


def setup(
    service: Any, *steps: Any, timeout: float | None = None
) -> tuple[Agent[Any], ScriptedModel, CountersignApprovals]:
    approvals = CountersignApprovals(
        AsyncCountersign(URL, KEY, transport=httpx.MockTransport(service)),
        context={"workflow_id": "w1"},
        timeout=timeout,
    )
    model = ScriptedModel(steps)
    agent = Agent(name="support", model=model, tools=[approvals.gate(refund_tool(), "process_refund")])
    return agent, model, approvals


def call(args: dict[str, Any], call_id: str = "call-1") -> list[Any]:
    return [function_call("refund", args, call_id=call_id)]


def tool_outputs(model: ScriptedModel) -> list[str]:
    last = model.last_call
    assert last is not None
    return [
        str(item["output"])
        for item in last.input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


async def test_an_auto_approved_call_runs_without_an_interruption() -> None:
    service = FakeService([ok(resource("auto_approved", outcome="auto_approved", by="policy", reason="small"))])
    agent, _, _ = setup(service, call(REFUND), [assistant_message("done")])
    result = await Runner.run(agent, "refund A-1")
    assert result.interruptions == [] and result.final_output == "done"
    assert ran == [REFUND]
    body = service.bodies()[0]
    assert body["action"] == "process_refund" and body["params"] == REFUND and body["context"] == {"workflow_id": "w1"}


async def test_a_pending_call_interrupts_and_is_approved_once_a_human_approves() -> None:
    approved = resource("approved", outcome="approved", by="U0BEN", reason=None)
    service = FakeService([ok(resource()), ok(approved)])
    agent, model, approvals = setup(service, call(REFUND), [assistant_message("done")])
    result = await Runner.run(agent, "refund A-1")
    assert [i.name for i in result.interruptions] == ["refund"] and ran == []
    state = await approvals.resolve(result)
    assert service.seen[1].url.path == "/v1/requests/r1" and service.seen[1].headers["Prefer"] == "wait=60"
    result = await Runner.run(agent, state)
    assert ran == [REFUND] and result.final_output == "done"
    assert tool_outputs(model) == ["refunded 620 for A-1"]


async def test_a_rejection_reaches_the_model_with_the_reviewers_reason_and_the_tool_never_runs() -> None:
    rejected = resource("rejected", outcome="rejected", by="U0BEN", reason="refund the 120 EUR item only")
    service = FakeService([ok(resource()), ok(rejected)])
    agent, model, approvals = setup(service, call(REFUND), [assistant_message("ok, I won't")])
    result = await Runner.run(agent, "refund A-1")
    result = await Runner.run(agent, await approvals.resolve(result))
    assert ran == []
    (output,) = tool_outputs(model)
    assert output.startswith("Rejected by U0BEN: refund the 120 EUR item only (refund was not run")


async def test_a_policy_denial_becomes_a_rejection_without_waiting() -> None:
    service = FakeService([ok(resource("denied", outcome="denied", by="policy", reason="refunds are closed"))])
    agent, model, approvals = setup(service, call(REFUND), [assistant_message("ok")])
    result = await Runner.run(agent, "refund A-1")
    assert result.interruptions
    await Runner.run(agent, await approvals.resolve(result))
    assert len(service.seen) == 1 and ran == []
    assert tool_outputs(model)[0].startswith("Denied by policy: refunds are closed")


async def test_edited_params_are_offered_to_the_model_and_run_when_called_with_them() -> None:
    edited = {"amount": 500, "order_id": "A-1"}
    approved = resource("approved", outcome="approved", by="U0BEN", reason=None, params=edited)
    service = FakeService([ok(resource()), ok(approved)])
    agent, model, approvals = setup(service, call(REFUND), call(edited, "call-2"), [assistant_message("refunded 500")])
    result = await Runner.run(agent, "refund A-1")
    result = await Runner.run(agent, await approvals.resolve(result))
    assert result.interruptions == [] and result.final_output == "refunded 500"
    assert ran == [edited], "the original call never ran; the approved one ran without a second request"
    assert len(service.seen) == 2
    offered = [json.loads(json.dumps(o)) for o in tool_outputs(model)]
    assert any('"amount": 500' in o and "call it again" in o for o in offered)


async def test_still_pending_after_the_timeout_leaves_the_interruption() -> None:
    service = FakeService([ok(resource()), ok(resource())])
    agent, _, approvals = setup(service, call(REFUND), timeout=1)
    result = await Runner.run(agent, "refund A-1")
    state = await approvals.resolve(result)
    assert [i.call_id for i in state.get_interruptions()] == ["call-1"] and ran == []


async def test_an_async_action_runs_at_once_as_the_manifest_says() -> None:
    service = FakeService([ok(resource(mode="async"))])
    agent, _, _ = setup(service, call(REFUND), [assistant_message("done")])
    result = await Runner.run(agent, "refund A-1")
    assert result.interruptions == [] and ran == [REFUND]
