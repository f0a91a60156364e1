"""Two service instances on one PostgreSQL database fire every deadline exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import FrozenClock
from bot.service.models import CreateRequest
from store.uow import uow
from tests.dbsupport import POSTGRES_SKIP_REASON, database_url, postgres_url
from tests.deadlines.conftest import started

pytestmark = pytest.mark.postgres


async def test_two_replicas_fire_each_stage_once(tmp_path: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    start = datetime.now(UTC)
    clock_a, clock_b = FrozenClock(start), FrozenClock(start)
    async with database_url("postgres", tmp_path) as url, started(url, clock_a) as a, started(url, clock_b) as b:
        body = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4", "order_id": "X"}
        submits = [
            (a if n % 2 else b).runtime.intake.submit(
                "acme-support",
                "agent bench",
                CreateRequest(action="process_refund", params={**body, "order_id": f"X{n}"}),
            )
            for n in range(200)
        ]
        ids = [resource.id for resource, _ in await asyncio.gather(*submits)]
        for _ in range(3):  # tier 1 -> tier 2 -> seniors -> expired
            clock_a.advance(5 * 60)
            clock_b.advance(5 * 60)
            await asyncio.gather(a.runtime.keeper.run_due(), b.runtime.keeper.run_due())
        async with uow(a.runtime.sessionmaker, read_only=True) as tx:
            fired: Counter[tuple[str, str]] = Counter()
            statuses: Counter[str] = Counter()
            for request_id in ids:
                for record in await tx.audit.for_request("acme-support", request_id):
                    if record.kind in ("request.escalated", "request.expired"):
                        fired[(request_id, record.kind)] += 1
                statuses[(await tx.requests.get_or_raise("acme-support", request_id)).status.value] += 1
    assert statuses == {"expired": 200}
    assert all(fired[(r, "request.escalated")] == 2 and fired[(r, "request.expired")] == 1 for r in ids)


async def test_a_long_poll_on_one_replica_returns_soon_after_another_replica_decides(tmp_path: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    clock = FrozenClock(datetime.now(UTC))
    async with database_url("postgres", tmp_path) as url, started(url, clock) as a, started(url, clock) as b:
        body = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4", "order_id": "W"}
        created, _ = await a.runtime.intake.submit(
            "acme-support", "agent bench", CreateRequest(action="process_refund", params=body)
        )
        waiting = asyncio.create_task(a.runtime.intake.wait("acme-support", created.id, seconds=30))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        await b.runtime.intake.cancel("acme-support", created.id)  # B's decision: A's process is not told
        decided = await asyncio.wait_for(waiting, timeout=5)
        # Found by A's decision watcher (one read for all its waiters every 0.2 s), not by the 30 s timeout.
        assert decided.status.value == "cancelled"
        assert loop.time() - cancelled_at < 2
