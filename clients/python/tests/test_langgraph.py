"""The LangGraph adapter in a real graph: a scripted chat model, ToolNode, and Countersign faked by httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain_core")

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

from countersign_client import ApprovalRequest, AsyncCountersign, Countersign, parse_callback
from countersign_client.langgraph import gated, resume_command

from .fakes import FakeService, ok, resource, sign

URL, KEY = "http://cs.test", "cs_acme_k"
REFUND = {"amount": 620, "order_id": "A-1"}


class ScriptedChat(BaseChatModel):
    """Answers with the scripted messages in order and records what it was shown."""

    replies: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChat:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self.replies.pop(0))])


def scripted(*calls: dict[str, Any]) -> ScriptedChat:
    """One refund tool call per entry of ``calls``, then a closing answer."""
    replies = [
        AIMessage("", tool_calls=[{"name": "refund", "args": a, "id": f"call-{i}", "type": "tool_call"}])
        for i, a in enumerate(calls)
    ]
    return ScriptedChat(replies=[*replies, AIMessage("done")], seen=[])


ran: list[dict[str, Any]] = []


@tool
def refund(amount: int, order_id: str) -> str:
    """Refund a customer's order."""
    ran.append({"amount": amount, "order_id": order_id})
    return f"refunded {amount} for {order_id}"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()


def graph(model: ScriptedChat, tools: list[Any], *, checkpointer: Any = None) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.bind_tools(tools).invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def last_tool_message(model: ScriptedChat) -> ToolMessage:
    message = model.seen[-1][-1]
    assert isinstance(message, ToolMessage)
    return message


def test_the_gated_tool_keeps_the_name_and_args_schema_the_model_sees() -> None:
    wrapped = gated(refund, Countersign(URL, KEY, transport=FakeService([]).transport()))
    assert wrapped.name == "refund" and wrapped.description == refund.description
    assert wrapped.tool_call_schema.model_json_schema() == refund.tool_call_schema.model_json_schema()  # type: ignore[union-attr]


def test_an_auto_approved_call_runs_the_tool() -> None:
    service = FakeService([ok(resource("auto_approved", outcome="auto_approved", by="policy", reason="small"))])
    model = scripted(REFUND)
    graph(model, [gated(refund, Countersign(URL, KEY, transport=service.transport()), "process_refund")]).invoke(
        {"messages": [HumanMessage("refund A-1")]}
    )
    assert ran == [REFUND]
    assert service.bodies()[0]["action"] == "process_refund" and service.bodies()[0]["params"] == REFUND
    assert service.seen[0].headers["Prefer"] == "wait=60"
    assert last_tool_message(model).content == "refunded 620 for A-1"


def test_a_pending_call_waits_and_runs_with_the_params_the_reviewer_edited() -> None:
    edited = {"amount": 500, "order_id": "A-1"}
    decided = resource("approved", outcome="approved", by="U0BEN", reason=None, params=edited)
    service = FakeService([ok(resource()), ok(decided)])
    model = scripted(REFUND)
    graph(model, [gated(refund, Countersign(URL, KEY, transport=service.transport()))]).invoke(
        {"messages": [HumanMessage("x")]}
    )
    assert ran == [edited]
    assert service.seen[1].url.path == "/v1/requests/r1"
    assert last_tool_message(model).content == "refunded 500 for A-1"


def test_a_rejection_reaches_the_model_with_the_reviewers_reason_and_the_tool_never_runs() -> None:
    rejected = resource("rejected", outcome="rejected", by="U0BEN", reason="refund the 120 EUR item only")
    service = FakeService([ok(resource()), ok(rejected)])
    model = scripted(REFUND)
    graph(model, [gated(refund, Countersign(URL, KEY, transport=service.transport()))]).invoke(
        {"messages": [HumanMessage("x")]}
    )
    assert ran == []
    message = last_tool_message(model)
    assert message.status == "error" and message.tool_call_id == "call-0"
    assert str(message.content).startswith("Rejected by U0BEN: refund the 120 EUR item only (refund was not run")


def test_a_policy_denial_is_told_as_such() -> None:
    service = FakeService([ok(resource("denied", outcome="denied", by="policy", reason="refunds are closed"))])
    model = scripted(REFUND)
    graph(model, [gated(refund, Countersign(URL, KEY, transport=service.transport()))]).invoke(
        {"messages": [HumanMessage("x")]}
    )
    assert ran == [] and str(last_tool_message(model).content).startswith("Denied by policy: refunds are closed")


def test_no_decision_within_the_timeout_withdraws_the_request_and_says_so() -> None:
    service = FakeService(
        [ok(resource()), ok(resource()), ok(resource("cancelled", outcome="cancelled", by="agent", reason=None))]
    )
    model = scripted(REFUND)
    client = Countersign(URL, KEY, transport=service.transport())
    graph(model, [gated(refund, client, timeout=1)]).invoke({"messages": [HumanMessage("x")]})
    assert ran == []
    assert service.seen[-1].url.path == "/v1/requests/r1/cancel"
    assert "No decision within 1 s" in str(last_tool_message(model).content)


def test_an_async_action_runs_at_once_as_the_manifest_says() -> None:
    service = FakeService([ok(resource(mode="async"))])
    model = scripted(REFUND)
    graph(model, [gated(refund, Countersign(URL, KEY, transport=service.transport()))]).invoke(
        {"messages": [HumanMessage("x")]}
    )
    assert ran == [REFUND]


class Service:
    """A stateful fake: the request stays pending until ``decide`` (replays of its key find it)."""

    def __init__(self) -> None:
        self.state = resource(rid="r9")
        self.keys: list[str] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            self.keys.append(json.loads(request.content)["idempotency_key"])
        return ok(self.state)

    def decide(self, **decision: Any) -> None:
        self.state = resource(decision.pop("status"), rid="r9", **decision)


def test_interrupt_pauses_the_graph_and_a_signed_callback_resumes_it() -> None:
    service = Service()
    client = Countersign(URL, KEY, transport=httpx.MockTransport(service))
    model = scripted(REFUND)
    app = graph(model, [gated(refund, client, mode="interrupt")], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}

    out = app.invoke({"messages": [HumanMessage("x")]}, config)
    (paused,) = out["__interrupt__"]
    assert paused.value["request_id"] == "r9" and paused.value["params"] == REFUND and paused.value["tool"] == "refund"
    assert ran == [] and service.paths == ["POST /v1/requests"]

    # A premature resume (still pending) pauses again; nothing runs.
    out = app.invoke(resume_command(ApprovalRequest.from_json(service.state), app.get_state(config).interrupts), config)
    assert out["__interrupt__"] and ran == []

    # The decision arrives as the service's signed callback.
    service.decide(status="approved", outcome="approved", by="U0BEN", reason=None)
    body = json.dumps(service.state).encode()
    decided = parse_callback("s3cret", body, sign("s3cret", body, 1_900_000_000), now=1_900_000_000)
    out = app.invoke(resume_command(decided, app.get_state(config).interrupts), config)
    assert "__interrupt__" not in out
    assert ran == [REFUND]
    assert len(set(service.keys)) == 1, "every replay asked with the same idempotency key: one card"
    assert last_tool_message(model).content == "refunded 620 for A-1"


def test_interrupt_then_rejection_gives_the_model_the_reason() -> None:
    service = Service()
    model = scripted(REFUND)
    app = graph(
        model,
        [gated(refund, Countersign(URL, KEY, transport=httpx.MockTransport(service)), mode="interrupt")],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "t2"}}
    app.invoke({"messages": [HumanMessage("x")]}, config)
    service.decide(status="rejected", outcome="rejected", by="U0BEN", reason="duplicate refund")
    out = app.invoke(resume_command(ApprovalRequest.from_json(service.state)), config)
    assert ran == []
    assert str(last_tool_message(model).content).startswith("Rejected by U0BEN: duplicate refund")
    assert out["messages"][-1].content == "done"


def test_resume_command_refuses_a_request_no_interrupt_waits_for() -> None:
    with pytest.raises(LookupError, match="r404"):
        resume_command(ApprovalRequest.from_json(resource(rid="r404")), [])


async def test_ainvoke_uses_the_async_client() -> None:
    rejected = resource("rejected", outcome="rejected", by="U0BEN", reason="no")
    service = FakeService(
        [ok(resource()), ok(rejected), ok(resource("approved", outcome="approved", by="U0ADA", reason=None))]
    )
    model = scripted(REFUND, REFUND)
    client = AsyncCountersign(URL, KEY, transport=service.transport())
    await graph(model, [gated(refund, client)]).ainvoke({"messages": [HumanMessage("x")]})
    assert ran == [REFUND]
    assert next(str(m.content) for m in model.seen[-1] if isinstance(m, ToolMessage)).startswith(
        "Rejected by U0BEN: no"
    )


async def test_async_interrupt_round_trip() -> None:
    service = Service()
    model = scripted(REFUND)
    client = AsyncCountersign(URL, KEY, transport=httpx.MockTransport(service))
    app = graph(model, [gated(refund, client, mode="interrupt")], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t3"}}
    out = await app.ainvoke({"messages": [HumanMessage("x")]}, config)
    assert out["__interrupt__"]
    service.decide(status="approved", outcome="approved", by="U0BEN", reason=None)
    await app.ainvoke(resume_command(ApprovalRequest.from_json(service.state)), config)
    assert ran == [REFUND] and len(set(service.keys)) == 1


def test_a_sync_invoke_with_an_async_client_is_refused_clearly() -> None:
    wrapped = gated(refund, AsyncCountersign(URL, KEY, transport=FakeService([]).transport()))
    with pytest.raises(TypeError, match="ainvoke"):
        wrapped.invoke(REFUND)


def test_direct_invoke_without_a_tool_call_returns_plain_text() -> None:
    service = FakeService([ok(resource("rejected", outcome="rejected", by="U0BEN", reason="no"))])
    assert (
        gated(refund, Countersign(URL, KEY, transport=service.transport()))
        .invoke(REFUND)
        .startswith("Rejected by U0BEN: no")
    )
