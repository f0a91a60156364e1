"""Waking up for deadlines: APScheduler at the next one, and a periodic sweep for anything missed.

The deadlines themselves live in the database (``request_stage``), so nothing is lost with
the process: on start the sweep runs at once, firing whatever fell due while it was down,
and every replica may run a scheduler (firing is claimed per stage in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.service.deadlines import DeadlineKeeper
from bot.service.signals import Signals

log = logging.getLogger(__name__)

SWEEP = "countersign-sweep"
NEXT = "countersign-next-deadline"


class DeadlineScheduler:
    def __init__(
        self, keeper: DeadlineKeeper, signals: Signals, *, sweep_every: timedelta = timedelta(seconds=15)
    ) -> None:
        self.keeper = keeper
        self.signals = signals
        self.sweep_every = sweep_every
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._lock = asyncio.Lock()
        self._again = False
        self._dirty = False
        self._arming: asyncio.Task[None] | None = None
        # The deadline (keeper's clock) the armed wake-up is for; None while unknown or being re-read.
        self._armed_for: datetime | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeping: asyncio.Task[Any] | None = None  # the sweep in flight, to cancel if a stop outlasts it
        self._stopped = False

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start sweeping now (overdue deadlines fire at once), then every ``sweep_every``."""
        self._scheduler.start()
        self._scheduler.add_job(
            self.run, IntervalTrigger(seconds=self.sweep_every.total_seconds()), id=SWEEP,
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True, misfire_grace_time=None,
        )  # fmt: skip

    def stop(self) -> None:
        self._stopped = True
        if self._arming is not None:
            self._arming.cancel()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def drain(self, timeout: float) -> None:
        """After :meth:`stop`: wait (up to ``timeout`` seconds) for a sweep in flight to end, so the
        database is not closed under it; APScheduler's shutdown does not wait for coroutine jobs."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
            return
        # Past the grace: cancelled here, before the database closes under it, rather than failing on a
        # closed engine or being cancelled by the loop's end (APScheduler logs either as a job's ERROR).
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def watch(self, stop: asyncio.Event) -> None:
        """Re-arm whenever a use case opens a stage (``Signals.stage_opened``), until ``stop`` is set."""
        while not stop.is_set():
            opened = asyncio.ensure_future(self.signals.deadlines.wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({opened, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                opened.cancel()
                stopping.cancel()
            if (at := self.signals.take_stage_opened()) is not None:
                self.poke(at)

    def poke(self, at: datetime | None = None) -> None:
        """Something changed (a stage opened, due ``at``): re-arm the wake-up for the earliest deadline.

        A deadline no earlier than the armed wake-up changes nothing (the wake-up re-reads what
        is next after firing), so a steady stream of new requests costs no query. Otherwise a
        burst of pokes folds into one task that re-reads the next deadline until nothing new
        arrived meanwhile, so no poke is lost and none queues up behind another.
        """
        if at is not None and self._armed_for is not None and at >= self._armed_for:
            return
        self._dirty = True
        if self._scheduler.running and (self._arming is None or self._arming.done()):
            self._arming = asyncio.get_running_loop().create_task(self._rearm())

    async def _rearm(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._arm()

    async def run(self) -> None:
        """Fire what is due, then arm a wake-up at the next deadline. Runs one at a time; a run
        asked for while one is going happens right after it, so no wake-up is lost."""
        if self._lock.locked():
            self._again = True
            return
        self._idle.clear()
        self._sweeping = asyncio.current_task()
        try:
            await self._run()
        except asyncio.CancelledError:
            if not self._stopped:
                raise
            # What it had not fired is still due in the database: the next start (or another replica) fires it.
            log.info("deadline sweep cancelled by the stop; what is due fires at the next sweep")
        finally:
            self._sweeping = None
            self._idle.set()

    async def _run(self) -> None:
        self._armed_for = None  # this wake-up is being spent
        async with self._lock:
            while True:
                self._again = False
                try:
                    await self.keeper.run_due()
                except Exception:
                    log.exception("deadline sweep failed; the next sweep retries")
                if not self._again:
                    break
        await self._arm()

    async def _arm(self) -> None:
        # Unknown until read: a poke meanwhile must not be judged against the old wake-up, since
        # this read may have started before that poke's stage committed.
        self._armed_for = None
        try:
            when = await self.keeper.next_wakeup()
        except Exception:
            log.exception("could not read the next deadline; the periodic sweep will catch it")
            return
        if when is None or not self._scheduler.running:
            return
        if self._dirty:  # a poke arrived during the read: the re-read that follows arms the wake-up
            return
        self._armed_for = when
        # The keeper's clock decides what is due; the wake-up itself is wall-clock time.
        run_at = max(when, datetime.now(UTC)) + timedelta(milliseconds=10)
        self._scheduler.add_job(
            self.run, DateTrigger(run_date=run_at), id=NEXT, replace_existing=True, misfire_grace_time=None
        )
