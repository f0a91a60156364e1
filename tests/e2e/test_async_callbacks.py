"""Async requests: the agent acts at once and hears the decision on its callback endpoint, signed, retried."""

from __future__ import annotations

import json
import time

from countersign_client import verify_signature

from bot.ids import ActionId
from bot.service.effects import Effect
from tests.e2e.conftest import BEN, CHLOE, FAST_RETRY, TIER1, Stack, callback_endpoint, eventually

CREDIT = {"amount": 40, "customer": {"tier": "standard"}}


async def test_callback_is_signed_and_retried_after_the_agent_fails_twice(stack: Stack) -> None:
    stack.runtime.worker.retry_for[Effect.CALLBACK] = FAST_RETRY
    async with callback_endpoint(failures=2) as endpoint:
        status, body = await stack.agent().ask("send_goodwill_credit", CREDIT, callback_url=endpoint.url)
        assert (status, body["status"], body["mode"]) == (202, "pending", "async")
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
        assert endpoint.received == []  # nothing is said before a decision

        await stack.reject(CHLOE, "customer already got a credit this month")
        await endpoint.wait_for(3)

    assert [s for _, _, s in endpoint.received] == [500, 500, 200]
    secret = await stack.secret("acme-support")
    for raw, signature, _ in endpoint.received:
        assert verify_signature(secret, signature, raw, now=time.time())
        assert not verify_signature(secret + "x", signature, raw, now=time.time())
        assert not verify_signature(secret, signature, raw + b" ", now=time.time())
    delivered = json.loads(endpoint.received[-1][0])
    assert (delivered["id"], delivered["status"], delivered["undo_operation"]) == (
        body["id"],
        "rejected",
        "revoke_credit",
    )
    assert delivered["decision"]["reason"] == "customer already got a credit this month"
    assert delivered["decision"]["by"] == CHLOE


async def test_a_delivered_callback_is_audited_and_not_sent_again(stack: Stack) -> None:
    stack.runtime.worker.retry_for[Effect.CALLBACK] = FAST_RETRY
    async with callback_endpoint(failures=1) as endpoint:
        _, body = await stack.agent().ask("send_goodwill_credit", CREDIT, callback_url=endpoint.url)
        await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
        await endpoint.wait_for(2)

        async def delivered() -> list[int]:
            records = await stack.audit("acme-support", body["id"])
            return [r.payload["status"] for r in records if r.kind == "callback.delivered"]

        assert await eventually(delivered, what="the delivery audited", timeout=5) == [200]
        # Other requests keep flowing through the worker; this callback is not among them any more.
        await stack.agent().ask("send_goodwill_credit", CREDIT)
        await stack.slack.wait_until(lambda: len(stack.slack.messages(TIER1)) == 2, what="the second card")
    assert len(endpoint.received) == 2
    assert json.loads(endpoint.received[-1][0])["status"] == "approved"
