"""The agent client (``countersign_client``, clients/python) against the running service: what an agent author actually writes."""

from __future__ import annotations

import asyncio

import pytest
from countersign_client import (
    ApiError,
    ApprovalRequest,
    AsyncCountersign,
    CallbackReceiver,
    Countersign,
    Rejected,
    Unreachable,
    require_approval,
    require_approval_async,
)

from bot.ids import ActionId
from tests.e2e.conftest import BEN, CHLOE, TIER1, Stack, callback_endpoint, refund

REFUND = refund("A-3")


async def test_require_approval_runs_the_function_only_once_a_human_approves(stack: Stack) -> None:
    client = Countersign(stack.url, api_key=stack.keys["acme-support"])
    ran: list[int] = []

    @require_approval(client, "process_refund", context={"reason": "charged twice"})
    def refund(*, amount: int, currency: str, customer: dict[str, str], card_number: str, order_id: str) -> str:
        ran.append(amount)
        return f"refunded {amount}"

    assert await asyncio.to_thread(refund, **{**REFUND, "amount": 20}) == "refunded 20"  # under the threshold

    pending = asyncio.create_task(asyncio.to_thread(refund, **REFUND))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="Refund €620")
    assert ran == [20]  # still waiting for a human
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    assert await asyncio.wait_for(pending, timeout=10) == "refunded 620"
    assert ran == [20, 620]

    refused = asyncio.create_task(asyncio.to_thread(refund, **{**REFUND, "order_id": "A-4"}))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="order A-4")
    await stack.reject(CHLOE, "this order was refunded last week")
    with pytest.raises(Rejected) as no:
        await asyncio.wait_for(refused, timeout=10)
    assert no.value.request.reason == "this order was refunded last week"
    assert ran == [20, 620]


async def test_the_sync_client_gets_api_errors_as_exceptions(stack: Stack) -> None:
    client = Countersign(stack.url, api_key=stack.keys["acme-support"])
    created = await asyncio.to_thread(client.request, "process_refund", REFUND)
    cancelled = await asyncio.to_thread(client.cancel, created.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(ApiError) as again:
        await asyncio.to_thread(client.cancel, created.id)
    assert (again.value.status, again.value.code) == (409, "conflict")
    with pytest.raises(ApiError) as bad_key:
        await asyncio.to_thread(Countersign(stack.url, api_key="nope").get, created.id)
    assert bad_key.value.status == 401


async def test_async_actions_run_at_once_and_are_undone_when_a_human_rejects(stack: Stack) -> None:
    client = AsyncCountersign(stack.url, api_key=stack.keys["acme-support"])
    receiver = CallbackReceiver(secret=await stack.secret("acme-support"))
    undone: list[ApprovalRequest] = []
    credited: list[int] = []

    async with callback_endpoint(on_success=receiver.handle) as endpoint:

        @require_approval_async(
            client, "send_goodwill_credit", receiver=receiver, callback_url=endpoint.url, on_rejected=undone.append
        )
        async def credit(*, amount: int, customer: dict[str, str]) -> str:
            credited.append(amount)
            return "credited"

        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(credit(amount=40, customer={"tier": "standard"}), timeout=10) == "credited"
        assert loop.time() - started < 2  # not held by the client's Prefer: wait, the decision comes later
        assert credited == [40] and undone == []

        await stack.reject(CHLOE, "goodwill budget is spent")
        await endpoint.wait_for(1)
    assert [(r.status, r.undo_operation) for r in undone] == [("rejected", "revoke_credit")]
    assert undone[0].reason == "goodwill budget is spent"


async def test_a_service_that_is_not_there_is_one_clear_error_in_both_clients() -> None:
    from tests.serviceproc import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    with pytest.raises(Unreachable, match="no answer from"):
        await asyncio.to_thread(Countersign(url, api_key="cs_x_1", timeout=2).get, "req")
    with pytest.raises(Unreachable, match="no answer from"):
        await AsyncCountersign(url, api_key="cs_x_1", timeout=2).get("req")


async def run_example_agent(env: dict[str, str]) -> tuple[int | None, str]:
    """``python examples/refund_agent.py 620`` with only ``env`` of the COUNTERSIGN_ variables: its exit
    status and standard error."""
    import os
    import sys
    from pathlib import Path

    from tests.serviceproc import free_port

    root = Path(__file__).resolve().parents[2]
    keep = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERSIGN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(root / "examples" / "refund_agent.py"), "620",
        env={**keep, "PYTHONPATH": str(root), "COUNTERSIGN_URL": f"http://127.0.0.1:{free_port()}", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "needs an API key (--key or $COUNTERSIGN_API_KEY)"),
        ({"COUNTERSIGN_API_KEY": "cs_acme-support_nope"}, "is the service (or the sandbox) running"),
    ],
)
async def test_the_example_agent_explains_a_missing_key_or_a_stopped_service(env: dict[str, str], said: str) -> None:
    code, err = await run_example_agent(env)
    assert code == 2 and said in err and "Traceback" not in err


async def test_the_example_agent_explains_a_key_the_service_refuses(stack: Stack) -> None:
    revoked = stack.keys["acme-support"][:-4] + "0000"  # the tenant's prefix, not a key it has
    code, err = await run_example_agent({"COUNTERSIGN_URL": stack.url, "COUNTERSIGN_API_KEY": revoked})
    assert code == 2, err
    assert "Countersign said 401" in err and "(a wrong or revoked COUNTERSIGN_API_KEY?)" in err, err
    assert "Traceback" not in err
    assert not stack.slack.messages(TIER1)  # nothing was asked of anyone
