"""The outbox worker: a crash redoes only the item in flight, a dead worker's items are taken over within
a lease (10 s), a slow live one keeps them, failures are sorted, and the database may fail for a while."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from bot.outbox.delivery import GiveUp, RetryAfter
from bot.outbox.loop import LEASE
from bot.service.signals import Signals
from store.models import OutboxItem
from store.outbox import ItemState
from store.uow import uow
from tests.e2e.conftest import eventually
from tests.outbox.conftest import FAST, NOTE, Recorder, enqueue, states, worker
from tests.outbox.outage import outage


async def kill(task: asyncio.Task[int]) -> None:
    """The worker dies (kill -9): nothing it was doing is finished, nothing is recorded."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_crash_after_the_first_item_of_a_batch_redoes_only_the_item_in_flight(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    await enqueue(sm, clock, 1, 2, 3)
    first = Recorder()
    first.hang = {2}
    dying = asyncio.create_task(worker(sm, clock, first).drain_once())
    await first.in_flight(2).wait()
    await kill(dying)
    assert first.delivered == [1]
    assert await states(sm, clock) == {1: ("done", 1), 2: ("leased", 1), 3: ("leased", 1)}

    clock.advance(LEASE.total_seconds())  # nobody renews the dead worker's leases
    second = Recorder()
    assert await worker(sm, clock, second).drain_once() == 2
    assert second.delivered == [2, 3]  # 1 was acknowledged as soon as it was delivered: not again
    assert await states(sm, clock) == {1: ("done", 1), 2: ("done", 2), 3: ("done", 2)}


async def test_a_dead_workers_items_are_taken_over_within_the_lease(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    assert timedelta(seconds=10) >= LEASE
    await enqueue(sm, clock, 1, 2)
    dead = Recorder()
    dead.hang = {1}
    dying = asyncio.create_task(worker(sm, clock, dead).drain_once())
    await dead.in_flight(1).wait()
    await kill(dying)

    other = Recorder()
    replica = worker(sm, clock, other)
    clock.advance(LEASE.total_seconds() - 0.001)
    assert await replica.drain_once() == 0  # still leased
    clock.advance(0.001)
    assert await replica.drain_once() == 2
    assert other.delivered == [1, 2]
    assert await states(sm, clock) == {1: ("done", 2), 2: ("done", 2)}


async def test_a_slow_live_worker_keeps_its_items_by_heartbeat(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    await enqueue(sm, clock, 1, 2)
    slow = Recorder()
    slow.hang = {1}
    beating = worker(sm, clock, slow, heartbeat=timedelta(milliseconds=10))
    working = asyncio.create_task(beating.drain_once())
    await slow.in_flight(1).wait()

    async def renewed() -> bool:
        async with uow(sm, read_only=True) as tx:
            items = (await tx.session.scalars(select(OutboxItem))).all()
        return all(i.lease_until == clock.now() + LEASE for i in items)

    other = Recorder()
    replica = worker(sm, clock, other)
    for _ in range(3):  # 24 s in all: well past the first lease, each step inside a renewed one
        clock.advance(8)
        await eventually(renewed, what="a heartbeat at the new time")
        assert await replica.drain_once() == 0
    slow.release.set()
    assert await working == 2
    assert slow.delivered == [1, 2] and other.delivered == []
    assert await states(sm, clock) == {1: ("done", 1), 2: ("done", 1)}


async def test_a_worker_that_lost_its_lease_leaves_the_rest_to_the_new_owner(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    """A worker cut off from the database past its lease learns at its next beat that the items moved on."""
    await enqueue(sm, clock, 1, 2)
    cut_off = Recorder()
    cut_off.hang = {1}
    stalled = worker(sm, clock, cut_off, heartbeat=timedelta(hours=1))
    working = asyncio.create_task(stalled.drain_once())
    await cut_off.in_flight(1).wait()
    clock.advance(LEASE.total_seconds())
    other = Recorder()
    other.hang = {1}
    replica = asyncio.create_task(worker(sm, clock, other).drain_once())
    await other.in_flight(1).wait()
    await stalled.renew_leases()  # the beat that finally gets through
    cut_off.release.set()
    other.release.set()
    assert await working == 2 and await replica == 2
    assert cut_off.delivered == [1]  # in flight when the lease was lost: cannot be taken back
    assert other.delivered == [1, 2]
    assert await states(sm, clock) == {1: ("done", 2), 2: ("done", 2)}


async def test_failures_are_sorted_retry_after_exactly_give_up_at_once_others_after_a_backoff(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    await enqueue(sm, clock, 1, 2, 3)
    await enqueue(sm, clock, 4, kind="test.unknown")  # no delivery for it here: left alone, not failed
    failing = Recorder()
    failing.fail = {1: RetryAfter(30, "chat.postMessage: ratelimited"), 2: GiveUp("unreadable"), 3: OSError("boom")}
    assert await worker(sm, clock, failing).drain_once() == 3
    assert await states(sm, clock) == {
        1: ("pending", 1),
        2: ("failed", 1),
        3: ("pending", 1),
        4: ("pending", 0),
    }
    async with uow(sm, read_only=True) as tx:
        entries = {e.last_error: e for e in await tx.outbox.inspect(now=clock.now())}
    now = clock.now()
    assert entries["chat.postMessage: ratelimited (retry after 30 s)"].available_at == now + timedelta(seconds=30)
    assert entries["OSError: boom"].available_at - now <= FAST.cap  # the worker's backoff (shortened for tests)
    assert entries["GiveUp: unreadable"].state is ItemState.FAILED


async def test_the_database_failing_for_a_moment_does_not_end_the_worker(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    recorder = Recorder()
    signals = Signals()
    loop = worker(sm, clock, recorder, signals=signals)
    stop = asyncio.Event()
    with outage(engine) as database:
        database.down = True
        running = asyncio.create_task(loop.run(stop))
        try:
            await eventually(
                lambda: _at_least(database.outbox_refused(), 5), what="the worker trying through the outage"
            )
            assert not running.done()
            database.down = False
            await enqueue(sm, clock, 1)
            signals.queued()
            await asyncio.wait_for(recorder.changed.wait(), timeout=10)
            assert recorder.delivered == [1]
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=5)
    assert await states(sm, clock) == {1: ("done", 1)}


async def test_an_acknowledgement_lost_to_the_database_only_delays_a_redelivery(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    await enqueue(sm, clock, 1)
    with outage(engine) as database:

        class GoneAfterDelivery(Recorder):
            async def deliver(self, item: OutboxItem) -> None:
                await super().deliver(item)
                database.down = True  # the database goes away between the delivery and its ack

        flaky = GoneAfterDelivery()
        assert await worker(sm, clock, flaky).drain_once() == 1
        database.down = False
    assert flaky.delivered == [1]
    assert await states(sm, clock) == {1: ("leased", 1)}
    clock.advance(LEASE.total_seconds())
    again = Recorder()
    assert await worker(sm, clock, again).drain_once() == 1
    assert again.delivered == [1]


def test_two_deliveries_for_one_kind_are_refused(sm: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match=r"test\.note"):
        worker(sm, clock, Recorder(), Recorder())


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def test_acknowledgements_that_come_together_share_a_commit(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    """Each item is acknowledged before its request's next item starts, yet a batch of requests ending
    together does not cost a commit each."""
    async with uow(sm) as tx:
        for n in range(20):
            await tx.outbox.enqueue("acme", NOTE, {"request_id": f"r{n}", "n": n}, now=clock.now())
    acks: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("UPDATE outbox") and "done_at=" in statement.split("WHERE")[0]:
            acks.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        recorder = Recorder()
        assert await worker(sm, clock, recorder).drain_once() == 20
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert sorted(recorder.delivered) == list(range(20))
    assert all(state == ("done", 1) for state in (await states(sm, clock)).values())
    assert 1 <= len(acks) < 20


async def test_an_item_queued_while_a_batch_hangs_is_delivered_without_waiting_for_that_batch(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    recorder = Recorder()
    recorder.hang = {1}  # Slack (say) does not answer this one for a long while
    signals = Signals()
    loop = worker(sm, clock, recorder, signals=signals)
    stop = asyncio.Event()
    await enqueue(sm, clock, 1)
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(recorder.in_flight(1).wait(), timeout=10)
        async with uow(sm) as tx:  # another request's item, queued after the stuck batch was claimed
            await tx.outbox.enqueue("acme", NOTE, {"request_id": "r2", "n": 2}, now=clock.now())
        signals.queued()
        await asyncio.wait_for(recorder.changed.wait(), timeout=10)
        assert recorder.delivered == [2]  # a second batch took it while the first still hangs
        assert (await states(sm, clock))[1] == ("leased", 1)
        recorder.release.set()
        await eventually(lambda: _at_least(len(recorder.delivered), 2), what="the stuck item delivered")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=5)
    assert await states(sm, clock) == {1: ("done", 1), 2: ("done", 1)}


async def test_a_requests_items_in_two_batches_in_flight_are_still_delivered_in_order(
    sm: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    recorder = Recorder()
    recorder.hang = {1}
    signals = Signals()
    loop = worker(sm, clock, recorder, signals=signals)
    stop = asyncio.Event()
    await enqueue(sm, clock, 1)  # request r1's card, say, whose post hangs
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(recorder.in_flight(1).wait(), timeout=10)
        async with uow(sm) as tx:  # r1's thread note (needs the card), and another request's item
            await tx.outbox.enqueue("acme", NOTE, {"request_id": "r1", "n": 2}, now=clock.now())
            await tx.outbox.enqueue("acme", NOTE, {"request_id": "r2", "n": 3}, now=clock.now())
        signals.queued()
        await eventually(lambda: _at_least(len(recorder.delivered), 1), what="r2's item delivered")
        await asyncio.sleep(0.2)
        assert recorder.delivered == [3]  # r1's note waits for r1's card, in the other batch
        recorder.release.set()
        await eventually(lambda: _at_least(len(recorder.delivered), 3), what="r1's items delivered")
        assert recorder.delivered == [3, 1, 2]
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=5)
