"""Agent API rate limits through the real service: a bucket per API key and one per tenant, 429 with
``Retry-After``, nothing recorded for a refused call, and the agent client waiting the 429s out.

The ``metered`` tenant (``manifests/metered.yaml``) allows 3 calls per key at once then one every 4 s,
and 5 per tenant then one every 2 s. The service's clock is frozen: the tests move it, never sleep.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from countersign_client import AsyncCountersign, Countersign, RateLimited
from sqlalchemy import func, select

from bot.clock import FrozenClock
from bot.sandbox.testing import serve_app
from store.models import Request
from store.uow import uow
from tests.deadlines.conftest import started
from tests.e2e.conftest import Stack, refund
from tests.ops.test_health_and_metrics import get, sample

METERED = Path(__file__).parent / "manifests" / "metered.yaml"
PING = {"action": "ping", "params": {}}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def metered(db_url: str, manifests: Path, clock: FrozenClock) -> AsyncIterator[Stack]:
    shutil.copy(METERED, manifests / METERED.name)
    async with started(db_url, clock, manifests) as stack:
        yield stack


async def call(
    stack: Stack, key: str, path: str = "/v1/requests", body: Any = PING, *, method: str = "POST"
) -> tuple[int, Any, str | None]:
    """(status, JSON body, Retry-After) of one agent call."""
    headers = {"Authorization": f"Bearer {key}"}
    async with stack.http.request(method, stack.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def second_key(stack: Stack, tenant: str = "metered") -> str:
    async with uow(stack.runtime.sessionmaker) as tx:
        return (await tx.tenants.create_api_key(tenant, now=stack.runtime.clock.now())).key


async def recorded(stack: Stack) -> tuple[int, int]:
    """What the ``metered`` tenant has in the database: (requests, audit events)."""
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        requests = await tx.session.scalar(select(func.count()).select_from(Request).where(Request.tenant == "metered"))
        events = await tx.audit.recent("metered", limit=1000)
    return requests or 0, len(events)


async def spend(stack: Stack, key: str, n: int) -> list[str]:
    """``n`` calls that must all pass; the ids of the requests they created."""
    ids = []
    for _ in range(n):
        status, body, _ = await call(stack, key)
        assert status == 200, body
        ids.append(body["id"])
    return ids


async def test_a_burst_over_the_key_limit_gets_429_with_retry_after_and_records_nothing(metered: Stack) -> None:
    key = metered.keys["metered"]
    first, *_ = await spend(metered, key, 3)
    before = await recorded(metered)
    assert before[0] == 3

    status, body, retry_after = await call(metered, key)
    assert (status, retry_after) == (429, "4")
    assert body["error"]["code"] == "rate_limited"
    assert "API key" in body["error"]["message"]
    # Every /v1 call that takes a key counts: reads and cancels are refused too, before any database work.
    assert (await call(metered, key, f"/v1/requests/{first}", None, method="GET"))[::2] == (429, "4")
    assert (await call(metered, key, f"/v1/requests/{first}/cancel", {}))[::2] == (429, "4")
    assert await recorded(metered) == before

    # What needs no key is never limited.
    assert (await call(metered, key, "/v1/openapi.json", None, method="GET"))[0] == 200
    assert (await get(metered, "/healthz"))[0] == 200
    _, text = await get(metered, "/metrics")
    assert sample(text, "countersign_api_rate_limited_total", tenant="metered", scope="key") == 3


async def test_another_key_shares_the_tenant_limit_and_another_tenant_is_unaffected(metered: Stack) -> None:
    first, other = metered.keys["metered"], await second_key(metered)
    await spend(metered, first, 3)
    assert (await call(metered, first))[0] == 429  # the first key is spent...
    await spend(metered, other, 2)  # ...the other still has its own, up to the tenant's 5
    before = await recorded(metered)

    status, body, retry_after = await call(metered, other)
    assert (status, retry_after) == (429, "2")
    assert "tenant" in body["error"]["message"]
    assert await recorded(metered) == before
    assert before[0] == 5

    acme = metered.keys["acme-support"]
    for n in range(10):
        body = {"action": "process_refund", "params": refund(f"R-{n}") | {"amount": 20}}
        assert (await call(metered, acme, body=body))[0] == 200
    _, text = await get(metered, "/metrics")
    assert sample(text, "countersign_api_rate_limited_total", tenant="metered", scope="tenant") == 1
    assert sample(text, "countersign_api_rate_limited_total", tenant="acme-support", scope="key") == 0


async def test_calls_pass_again_once_the_bucket_has_refilled(metered: Stack, clock: FrozenClock) -> None:
    key = metered.keys["metered"]
    await spend(metered, key, 3)
    assert (await call(metered, key))[::2] == (429, "4")
    clock.advance(3.5)
    assert (await call(metered, key))[::2] == (429, "1")  # half a second left, rounded up
    clock.advance(0.5)
    await spend(metered, key, 1)
    assert (await call(metered, key))[0] == 429
    assert (await recorded(metered))[0] == 4


async def test_the_client_waits_out_retry_after_and_the_call_goes_through(metered: Stack, clock: FrozenClock) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    key = metered.keys["metered"]
    client = AsyncCountersign(metered.url, api_key=key, sleep=sleep)
    created = [await client.request("ping", {}) for _ in range(3)]
    assert waits == []
    fourth = await client.request("ping", {})
    assert (fourth.status, waits) == ("auto_approved", [4.0])
    # A long poll refused for a moment is retried with its Prefer: wait.
    read = await client.get(created[0].id, wait=30)
    assert (read.id, waits) == (created[0].id, [4.0, 4.0])

    def sync_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    sync = Countersign(metered.url, api_key=key, sleep=sync_sleep)
    assert (await asyncio.to_thread(sync.request, "ping", {})).status == "auto_approved"
    assert waits == [4.0, 4.0, 4.0]
    assert (await recorded(metered))[0] == 5

    # A wait longer than the client allows, or no retries left: a clear error at once, nothing slept.
    for impatient, why in (
        (AsyncCountersign(metered.url, api_key=key, sleep=sleep, max_retry_wait=2), "longer than max_retry_wait, 2 s"),
        (AsyncCountersign(metered.url, api_key=key, sleep=sleep, max_retries=0), "still refused after 0 retries"),
    ):
        with pytest.raises(RateLimited) as refused:
            await impatient.request("ping", {})
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (429, "rate_limited", 4.0)
        assert why in str(refused.value)
    assert waits == [4.0, 4.0, 4.0]
    assert (await recorded(metered))[0] == 5


async def test_the_client_retries_a_long_poll_with_its_prefer_wait_and_reads_a_proxys_bare_429() -> None:
    answers = [
        web.json_response(
            {"error": {"code": "rate_limited", "message": "slow down"}}, status=429, headers={"Retry-After": "7"}
        ),
        web.Response(text="Too Many Requests", status=429),  # a proxy's: no JSON, no Retry-After
        web.json_response({"id": "r1", "status": "approved"}),
    ]
    prefers: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        prefers.append(request.headers.get("Prefer"))
        return answers.pop(0)

    app = web.Application()
    app.router.add_get("/v1/requests/{id}", handle)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with serve_app(app) as url:
        read = await AsyncCountersign(url, api_key="k", sleep=sleep).get("r1", wait=30)
    assert (read.id, read.status) == ("r1", "approved")
    assert waits == [7.0, 1.0]
    assert prefers == ["wait=30"] * 3
