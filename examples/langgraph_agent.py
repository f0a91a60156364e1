"""A LangGraph agent whose refund tool is gated by Countersign.

    pip install 'countersign-client[langgraph]'
    countersign sandbox --service-port 3000        # in another terminal
    python examples/langgraph_agent.py 620         # waits for your click on the card in the sandbox page
    python examples/langgraph_agent.py 620 --interrupt   # pauses the graph instead, and resumes it

The URL and key come from COUNTERSIGN_URL / COUNTERSIGN_API_KEY, else the sandbox's defaults
(http://127.0.0.1:3000 and the acme-support key in .countersign/agent-keys.json). Tenant
acme-support's manifest sends refunds over 500 to a human; smaller ones pass at once.

The model: with OPENAI_API_KEY set and ``pip install langchain-openai``, gpt-4o-mini; otherwise a
scripted stand-in that asks for the refund, then reports what the tool said (no API key needed).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from countersign_client import ApiError, ConfigurationError, Countersign, CountersignError, Unreachable
from countersign_client.langgraph import gated, resume_command
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


@tool
def process_refund(amount: int, currency: str, customer: dict[str, str], card_number: str, order_id: str) -> str:
    """Refund a customer's payment for an order."""
    return f"refunded {amount} {currency} to {customer['name']} for order {order_id}"


class ScriptedModel(BaseChatModel):
    """Stands in for an LLM: first asks for the refund, then repeats what the tool answered."""

    amount: int

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(f"The refund tool said: {last.content}")
        else:
            args = {
                "amount": self.amount,
                "currency": "EUR",
                "customer": {"name": "Ana", "email": "ana@example.com"},
                "card_number": "4111111111111111",
                "order_id": "A-1001",
            }
            reply = AIMessage(
                "", tool_calls=[{"name": "process_refund", "args": args, "id": "call-1", "type": "tool_call"}]
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def model(amount: int) -> Any:
    if os.environ.get("OPENAI_API_KEY"):
        try:
            from langchain_openai import ChatOpenAI  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            print("(OPENAI_API_KEY is set but langchain-openai is not installed: using the scripted model)")
        else:
            return ChatOpenAI(model="gpt-4o-mini")
    return ScriptedModel(amount=amount)


def client() -> Countersign:
    url = os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:3000")
    key = os.environ.get("COUNTERSIGN_API_KEY")
    keys = Path(".countersign/agent-keys.json")
    if not key and keys.exists():
        key = json.loads(keys.read_text()).get("acme-support")
    return Countersign(url, key)


def build(llm: Any, tools: list[Any]) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.bind_tools(tools).invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver())  # a checkpointer: interrupt() needs one


def run(amount: int, interrupting: bool) -> int:
    cs = client()
    refund = gated(
        process_refund,
        cs,
        context={"reason": "customer was charged twice", "workflow_id": "langgraph-demo"},
        mode="interrupt" if interrupting else "wait",
    )
    app = build(model(amount), [refund])
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    ask = f"Ana (ana@example.com) was charged twice for order A-1001: refund {amount} EUR to card 4111111111111111."
    print(f"asking to refund {amount} EUR (refunds over 500 wait for a human: approve or reject in the sandbox page)")
    out = app.invoke({"messages": [HumanMessage(ask)]}, config)
    while interrupting and out.get("__interrupt__"):
        (paused,) = out["__interrupt__"]
        print(f"graph paused on Countersign request {paused.value['request_id']}; waiting for the decision...")
        # Here the decision is read by polling; a server would resume from the async callback instead.
        decided = cs.wait_for_decision(cs.get(paused.value["request_id"]))
        out = app.invoke(resume_command(decided, app.get_state(config).interrupts), config)
    print(out["messages"][-1].content)
    return 0


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    amount = int(args[0]) if args else 620
    try:
        return run(amount, "--interrupt" in sys.argv)
    except ConfigurationError as exc:
        print(f"{exc}: start `countersign sandbox` here, or set COUNTERSIGN_API_KEY", file=sys.stderr)
    except Unreachable as exc:
        print(exc, file=sys.stderr)
    except ApiError as exc:
        hint = " (a wrong or revoked COUNTERSIGN_API_KEY?)" if exc.status == 401 else ""
        print(f"Countersign said {exc}{hint}", file=sys.stderr)
    except CountersignError as exc:
        print(f"Countersign: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
