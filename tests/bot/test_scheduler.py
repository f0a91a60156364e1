"""The deadline scheduler re-reads the next deadline only when a new one could be earlier."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from bot.scheduler import NEXT, DeadlineScheduler
from bot.service.deadlines import DeadlineKeeper
from bot.service.signals import Signals

SOON = datetime.now(UTC) + timedelta(hours=1)


class FakeKeeper:
    """Answers ``next_wakeup`` with ``nxt`` and counts the reads; a read may be held open."""

    def __init__(self, nxt: datetime | None) -> None:
        self.nxt = nxt
        self.reads = 0
        self.hold: asyncio.Event | None = None

    async def run_due(self) -> None:
        return None

    async def next_wakeup(self) -> datetime | None:
        self.reads += 1
        answer = self.nxt
        if self.hold is not None:
            await self.hold.wait()
        return answer


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def armed_at(scheduler: DeadlineScheduler) -> datetime:
    job: Any = scheduler._scheduler.get_job(NEXT)
    assert job is not None, "no wake-up armed"
    return cast(datetime, job.next_run_time)


async def started(keeper: FakeKeeper) -> DeadlineScheduler:
    scheduler = DeadlineScheduler(cast(DeadlineKeeper, keeper), Signals(), sweep_every=timedelta(hours=1))
    scheduler.start()  # the first sweep runs at once and arms the wake-up
    for _ in range(100):
        if keeper.reads:
            break
        await asyncio.sleep(0.01)
    await settle()
    return scheduler


async def test_a_later_deadline_costs_no_read_and_an_earlier_one_rearms() -> None:
    keeper = FakeKeeper(SOON)
    scheduler = await started(keeper)
    try:
        assert keeper.reads == 1 and abs((armed_at(scheduler) - SOON).total_seconds()) < 1
        for minutes in (1, 5, 60):  # a steady stream of new requests due after the armed wake-up
            scheduler.poke(SOON + timedelta(minutes=minutes))
        await settle()
        assert keeper.reads == 1

        sooner = SOON - timedelta(minutes=30)
        keeper.nxt = sooner
        scheduler.poke(sooner)
        await settle()
        assert keeper.reads == 2 and abs((armed_at(scheduler) - sooner).total_seconds()) < 1
    finally:
        scheduler.stop()


async def test_a_poke_during_a_read_is_not_judged_against_the_old_wake_up() -> None:
    keeper = FakeKeeper(SOON)
    scheduler = await started(keeper)
    try:
        keeper.hold = asyncio.Event()
        scheduler.poke()  # a re-read starts (e.g. after a stage of unknown deadline opened) and is held
        await settle()
        assert keeper.reads == 2
        # While it reads, a stage due later than the old wake-up commits: the read may have missed it.
        keeper.nxt = SOON - timedelta(minutes=10)
        scheduler.poke(SOON + timedelta(minutes=1))
        keeper.hold.set()
        keeper.hold = None
        await settle()
        assert keeper.reads == 3 and abs((armed_at(scheduler) - keeper.nxt).total_seconds()) < 1
    finally:
        scheduler.stop()


async def test_a_stop_that_outlasts_a_sweep_cancels_it_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """A sweep still running when the stop's grace is over is cancelled before the database closes, and
    APScheduler logs no ERROR for it (on-call would read one as a failure)."""
    keeper = FakeKeeper(SOON)
    scheduler = await started(keeper)
    slow = asyncio.Event()

    async def run_due() -> None:
        slow.set()
        await asyncio.sleep(60)  # a sweep stuck on a slow database

    keeper.run_due = run_due  # type: ignore[method-assign]
    sweep = asyncio.ensure_future(scheduler.run())  # as APScheduler runs it
    await asyncio.wait_for(slow.wait(), 5)
    with caplog.at_level(logging.INFO):
        scheduler.stop()
        await scheduler.drain(0.05)
        await settle()
    assert sweep.done() and not sweep.cancelled()  # ended, within the stop, and not as a failed job
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("cancelled by the stop" in r.getMessage() for r in caplog.records)
