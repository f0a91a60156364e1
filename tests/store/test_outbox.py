"""The outbox: atomic with the state change, leased, retried, never lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from policy.types import Status
from store import FailOutcome, ItemState, RetryPolicy, uow

from .conftest import T0
from .helpers import pending_request

LEASE = timedelta(seconds=30)


class Crash(Exception):
    pass


async def test_state_change_and_outbox_row_commit_together(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    async with uow(sm) as tx:
        assert await tx.requests.decide(request_id, expected_version=0, outcome=Status.APPROVED, by="U1", now=T0)
        await tx.outbox.enqueue(tenant, "callback.deliver", {"request_id": request_id}, now=T0)
    async with uow(sm) as tx:
        assert (await tx.requests.get_or_raise(tenant, request_id)).status is Status.APPROVED
        [item] = await tx.outbox.claim("w1", now=T0, lease=LEASE)
    assert item.payload == {"request_id": request_id}


async def test_crash_before_commit_loses_both_state_change_and_outbox_row(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    with pytest.raises(Crash):
        async with uow(sm) as tx:
            assert await tx.requests.decide(request_id, expected_version=0, outcome=Status.APPROVED, now=T0)
            await tx.outbox.enqueue(tenant, "callback.deliver", {"request_id": request_id}, now=T0)
            raise Crash
    async with uow(sm) as tx:
        assert (await tx.requests.get_or_raise(tenant, request_id)).status is Status.PENDING
        assert await tx.outbox.claim("w1", now=T0, lease=LEASE) == []
        assert await tx.outbox.inspect(now=T0) == []


async def test_claimed_but_unacknowledged_item_is_reclaimed_after_the_lease(sm, tenant):
    async with uow(sm) as tx:
        item_id = await tx.outbox.enqueue(tenant, "slack.post_card", {"n": 1}, now=T0)
    async with uow(sm) as tx:
        [first] = await tx.outbox.claim("w1", now=T0, lease=LEASE)
    # w1 dies here. Until its lease ends nobody else gets the item...
    async with uow(sm) as tx:
        assert await tx.outbox.claim("w2", now=T0 + timedelta(seconds=29), lease=LEASE) == []
        [entry] = await tx.outbox.inspect(now=T0 + timedelta(seconds=29))
        assert entry.state is ItemState.LEASED
    # ...then w2 does.
    async with uow(sm) as tx:
        [again] = await tx.outbox.claim("w2", now=T0 + timedelta(seconds=31), lease=LEASE)
    assert first.id == again.id == item_id and again.attempts == 2
    async with uow(sm) as tx:
        assert not await tx.outbox.ack(item_id, "w1", now=T0 + timedelta(seconds=32))  # stale worker
        assert await tx.outbox.ack(item_id, "w2", now=T0 + timedelta(seconds=32))
        assert await tx.outbox.claim("w3", now=T0 + timedelta(hours=1), lease=LEASE) == []
        [done] = await tx.outbox.inspect(now=T0, states=[ItemState.DONE])
        assert done.id == item_id


async def test_a_batch_is_acknowledged_in_one_go_but_only_what_the_worker_still_holds(sm, tenant):
    async with uow(sm) as tx:
        ids = [await tx.outbox.enqueue(tenant, "slack.post_card", {"n": n}, now=T0) for n in range(3)]
    async with uow(sm) as tx:
        assert len(await tx.outbox.claim("w1", now=T0, lease=LEASE)) == 3
    async with uow(sm) as tx:  # w1 stalls past its lease; w2 takes the items over
        assert len(await tx.outbox.claim("w2", now=T0 + timedelta(seconds=31), lease=LEASE)) == 3
    async with uow(sm) as tx:
        assert await tx.outbox.ack_many(ids, "w1", now=T0 + timedelta(seconds=32)) == 0
        assert await tx.outbox.ack_many(ids[:2], "w2", now=T0 + timedelta(seconds=32)) == 2
        assert await tx.outbox.ack_many([], "w2", now=T0 + timedelta(seconds=32)) == 0
        left = await tx.outbox.inspect(now=T0 + timedelta(seconds=32), states=[ItemState.LEASED])
    assert [e.id for e in left] == [ids[2]]


async def test_concurrent_workers_never_get_the_same_item(sm, tenant):
    async with uow(sm) as tx:
        for i in range(60):
            await tx.outbox.enqueue(tenant, "slack.update_card", {"i": i}, now=T0)

    async def worker(name: str) -> list[int]:
        got: list[int] = []
        while True:
            async with uow(sm) as tx:
                items = await tx.outbox.claim(name, now=T0, lease=LEASE, limit=3)
            if not items:
                return got
            got += [i.id for i in items]
            await asyncio.sleep(0)

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    delivered = [i for r in results for i in r]
    assert len(delivered) == 60 and len(set(delivered)) == 60


async def test_failures_back_off_exponentially_then_give_up(sm, tenant):
    policy = RetryPolicy(base=timedelta(seconds=2), cap=timedelta(seconds=60), jitter=lambda: 0.0)
    async with uow(sm) as tx:
        item_id = await tx.outbox.enqueue(tenant, "callback.deliver", {}, now=T0, give_up_after=timedelta(minutes=3))
    now = T0
    waits = []
    while True:
        async with uow(sm) as tx:
            [item] = await tx.outbox.claim("w", now=now, lease=LEASE)
            outcome = await tx.outbox.fail(item.id, "w", now=now, error="HTTP 503", retry=policy)
        if outcome is FailOutcome.FAILED:
            break
        async with uow(sm) as tx:
            [entry] = await tx.outbox.inspect(now=now)
            assert await tx.outbox.claim("w", now=entry.available_at - timedelta(microseconds=1), lease=LEASE) == []
        waits.append((entry.available_at - now).total_seconds())
        now = entry.available_at
    assert waits[:6] == [2, 4, 8, 16, 32, 60]
    async with uow(sm) as tx:
        [failed] = await tx.outbox.inspect(now=now, states=[ItemState.FAILED])
        assert failed.id == item_id and failed.last_error == "HTTP 503" and failed.age >= timedelta(minutes=3)
        assert await tx.outbox.claim("w", now=now + timedelta(days=1), lease=LEASE) == []


def test_jitter_shortens_the_wait_by_at_most_the_ratio():
    policy = RetryPolicy(base=timedelta(seconds=10), jitter_ratio=0.5, jitter=lambda: 0.999)
    assert timedelta(seconds=5) < policy.delay(1) < timedelta(seconds=5.1)
    assert RetryPolicy(jitter=lambda: 0.0).delay(30) == RetryPolicy().cap


async def test_dedupe_key_and_lost_lease(sm, tenant):
    async with uow(sm) as tx:
        first = await tx.outbox.enqueue(tenant, "slack.post_card", {}, now=T0, dedupe_key="card:r1:0")
        assert first is not None
        assert await tx.outbox.enqueue(tenant, "slack.post_card", {}, now=T0, dedupe_key="card:r1:0") is None
        assert await tx.outbox.fail(first, "nobody", now=T0, error="x") is FailOutcome.LOST_LEASE
        assert await tx.outbox.next_available_at(now=T0) == T0


async def test_a_heartbeat_keeps_a_slow_workers_lease_and_tells_it_when_the_item_is_no_longer_its(sm, tenant):
    lease = timedelta(seconds=10)
    async with uow(sm) as tx:
        kept, done = [await tx.outbox.enqueue(tenant, "slack.thread", {"n": n}, now=T0) for n in range(2)]
    async with uow(sm) as tx:
        assert len(await tx.outbox.claim("w1", now=T0, lease=lease)) == 2
    async with uow(sm) as tx:
        assert await tx.outbox.ack(done, "w1", now=T0 + timedelta(seconds=1))
        assert await tx.outbox.renew({kept, done}, "w1", now=T0 + timedelta(seconds=8), lease=lease) == {kept}
    async with uow(sm) as tx:  # past the first lease, inside the renewed one: still w1's
        assert await tx.outbox.claim("w2", now=T0 + timedelta(seconds=17), lease=lease) == []
    # w1 misses its beats; past the renewed lease w2 takes the item over, and w1 learns it at its next beat.
    async with uow(sm) as tx:
        [taken] = await tx.outbox.claim("w2", now=T0 + timedelta(seconds=18), lease=lease)
        assert taken.id == kept
        assert await tx.outbox.renew({kept}, "w1", now=T0 + timedelta(seconds=19), lease=lease) == set()
        assert await tx.outbox.renew(set(), "w1", now=T0 + timedelta(seconds=19), lease=lease) == set()
        [entry] = await tx.outbox.inspect(now=T0 + timedelta(seconds=19), states=[ItemState.LEASED])
        assert entry.id == kept and entry.available_at == T0


async def test_an_item_that_cannot_be_delivered_is_given_up_at_once(sm, tenant):
    async with uow(sm) as tx:
        item_id = await tx.outbox.enqueue(tenant, "slack.thread", {"text": 7}, now=T0)
    async with uow(sm) as tx:
        await tx.outbox.claim("w", now=T0, lease=LEASE)
        outcome = await tx.outbox.fail(item_id, "w", now=T0, error="GiveUp: unreadable", give_up=True)
    assert outcome is FailOutcome.FAILED
    async with uow(sm) as tx:
        [failed] = await tx.outbox.inspect(now=T0, states=[ItemState.FAILED])
        assert failed.id == item_id and failed.attempts == 1


async def test_the_next_claimable_item_waits_out_live_leases_and_only_counts_the_kinds_asked_for(sm, tenant):
    lease = timedelta(seconds=10)
    async with uow(sm) as tx:
        assert await tx.outbox.next_available_at(now=T0) is None
        await tx.outbox.enqueue(tenant, "slack.thread", {}, now=T0)
        await tx.outbox.enqueue(tenant, "slack.future_kind", {}, now=T0 - timedelta(seconds=5))
        await tx.outbox.enqueue(tenant, "slack.dm", {}, now=T0, available_at=T0 + timedelta(seconds=30))
    kinds = ["slack.thread", "slack.dm"]
    async with uow(sm) as tx:
        assert await tx.outbox.next_available_at(now=T0, kinds=kinds) == T0
        assert await tx.outbox.next_available_at(now=T0) == T0 - timedelta(seconds=5)
        [item] = await tx.outbox.claim("w1", now=T0, lease=lease, kinds=kinds)
        assert item.kind == "slack.thread"
    async with uow(sm) as tx:  # leased to a live worker: claimable when its lease runs out, not now
        assert await tx.outbox.next_available_at(now=T0 + timedelta(seconds=1), kinds=kinds) == T0 + lease
        assert await tx.outbox.next_available_at(now=T0 + lease, kinds=kinds) == T0
        assert await tx.outbox.ack(item.id, "w1", now=T0 + timedelta(seconds=2))
        assert await tx.outbox.next_available_at(now=T0 + timedelta(seconds=2), kinds=kinds) == T0 + timedelta(
            seconds=30
        )


async def test_a_claim_takes_at_most_its_limit_from_a_large_backlog(sm, tenant):
    """A worker takes its batch, not the backlog: the rest stays free for other replicas' workers."""
    async with uow(sm) as tx:
        for n in range(300):
            await tx.outbox.enqueue(tenant, "slack.thread", {"request_id": f"r{n}", "text": "x"}, now=T0)
    async with uow(sm) as tx:
        first = await tx.outbox.claim("w1", now=T0, lease=LEASE, limit=20)
    async with uow(sm) as tx:
        second = await tx.outbox.claim("w2", now=T0, lease=LEASE, limit=20)
    assert len(first) == len(second) == 20
    assert not {i.id for i in first} & {i.id for i in second}
