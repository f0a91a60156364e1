"""Async requests: the agent acts at once and hears the decision on its callback endpoint, signed, retried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web

from bot.client import SIGNATURE_HEADER, verify_signature
from bot.ids import ActionId, BlockId, CallbackId
from store.outbox import RetryPolicy
from tests.e2e.conftest import BEN, CHLOE, TIER1, Stack

CREDIT = {"amount": 40, "customer": {"tier": "standard"}}
FAST_RETRY = RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200), jitter_ratio=0)


@dataclass
class Endpoint:
    """The agent's callback endpoint: answers ``failures`` 500s, then 200s; keeps what it received."""

    url: str = ""
    failures: int = 0
    on_success: Callable[[bytes, str], object] | None = None  # what the agent does with a callback it accepts
    received: list[tuple[bytes, str, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        status = 500 if len(self.received) < self.failures else 200
        raw, signature = await request.read(), request.headers.get(SIGNATURE_HEADER, "")
        if status == 200 and self.on_success is not None:
            self.on_success(raw, signature)
        self.received.append((raw, signature, status))
        self.changed.set()
        return web.json_response({"ok": status == 200}, status=status)

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def callback_endpoint(
    failures: int = 0, on_success: Callable[[bytes, str], object] | None = None
) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(failures=failures, on_success=on_success)
    app = web.Application()
    app.router.add_post("/countersign", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/countersign"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


async def _reject(stack: Stack, user: str, reason: str) -> None:
    await stack.slack.click(user, channel=TIER1, action_id=ActionId.REJECT)
    await stack.slack.wait_for_modal(user, callback_id=CallbackId.REJECT_REASON)
    await stack.slack.submit_modal(user, {f"{BlockId.REJECT_REASON}/reason": reason})


async def test_callback_is_signed_and_retried_after_the_agent_fails_twice(stack: Stack) -> None:
    stack.runtime.worker.callback_retry = FAST_RETRY
    async with callback_endpoint(failures=2) as endpoint:
        status, body = await stack.agent().ask("send_goodwill_credit", CREDIT, callback_url=endpoint.url)
        assert (status, body["status"], body["mode"]) == (202, "pending", "async")
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
        assert endpoint.received == []  # nothing is said before a decision

        await _reject(stack, CHLOE, "customer already got a credit this month")
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
    stack.runtime.worker.callback_retry = FAST_RETRY
    async with callback_endpoint(failures=1) as endpoint:
        _, body = await stack.agent().ask("send_goodwill_credit", CREDIT, callback_url=endpoint.url)
        await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
        await endpoint.wait_for(2)

        async def delivered() -> list[int]:
            records = await stack.audit("acme-support", body["id"])
            return [r.payload["status"] for r in records if r.kind == "callback.delivered"]

        async with asyncio.timeout(5):
            while not await delivered():
                await asyncio.sleep(0.02)
        assert await delivered() == [200]
        # Other requests keep flowing through the worker; this callback is not among them any more.
        await stack.agent().ask("send_goodwill_credit", CREDIT)
        await stack.slack.wait_until(lambda: len(stack.slack.messages(TIER1)) == 2, what="the second card")
    assert len(endpoint.received) == 2
    assert json.loads(endpoint.received[-1][0])["status"] == "approved"
