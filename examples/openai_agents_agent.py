"""An OpenAI Agents SDK agent whose refund tool needs Countersign's approval.

    pip install 'countersign-client[openai-agents]'
    countersign sandbox --service-port 3000        # in another terminal
    python examples/openai_agents_agent.py 620     # waits for your click on the card in the sandbox page

The URL and key come from COUNTERSIGN_URL / COUNTERSIGN_API_KEY, else the sandbox's defaults
(http://127.0.0.1:3000 and the acme-support key in .countersign/agent-keys.json). Tenant
acme-support's manifest sends refunds over 500 to a human; smaller ones pass at once.

The model: with OPENAI_API_KEY set, the SDK's default OpenAI model; otherwise the SDK's
ScriptedModel asks for the refund and then says it is done (no API key needed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from countersign_client import ApiError, AsyncCountersign, ConfigurationError, CountersignError, Unreachable
from countersign_client.openai_agents import CountersignApprovals


@function_tool
def process_refund(amount: int, currency: str, customer_name: str, card_number: str, order_id: str) -> str:
    """Refund a customer's payment for an order."""
    return f"refunded {amount} {currency} to {customer_name} for order {order_id}"


def model(amount: int) -> Any:
    if os.environ.get("OPENAI_API_KEY"):
        return None  # the SDK's default model
    set_tracing_disabled(True)  # nothing to send traces to without a key
    from agents.testing import ScriptedModel, assistant_message, function_call

    args = {"amount": amount, "currency": "EUR", "customer_name": "Ana", "card_number": "4111111111111111",
            "order_id": "A-1001"}  # fmt: skip
    return ScriptedModel(
        [
            [function_call("process_refund", args, call_id="call-1")],
            [assistant_message("I have asked for the refund; see the tool's answer above.")],
        ]
    )


def client() -> AsyncCountersign:
    url = os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:3000")
    key = os.environ.get("COUNTERSIGN_API_KEY")
    keys = Path(".countersign/agent-keys.json")
    if not key and keys.exists():
        key = json.loads(keys.read_text()).get("acme-support")
    return AsyncCountersign(url, key)


async def run(amount: int) -> int:
    # Countersign's params are the tool's arguments: the manifest reads `amount`.
    approvals = CountersignApprovals(client(), context={"reason": "customer was charged twice"})
    refund = approvals.gate(process_refund, action="process_refund")
    llm = model(amount)
    agent = Agent(name="support", instructions="You issue refunds with the refund tool.", tools=[refund],
                  **({"model": llm} if llm is not None else {}))  # fmt: skip
    print(f"asking to refund {amount} EUR (refunds over 500 wait for a human: approve or reject in the sandbox page)")
    result = await Runner.run(
        agent, f"Ana was charged twice for order A-1001: refund {amount} EUR to card 4111111111111111."
    )
    while result.interruptions:
        print(f"run interrupted for approval of {[i.name for i in result.interruptions]}; waiting for Countersign...")
        result = await Runner.run(agent, await approvals.resolve(result))
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            print(f"tool: {item.output}")
    print(result.final_output)
    return 0


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    try:
        return asyncio.run(run(int(args[0]) if args else 620))
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
