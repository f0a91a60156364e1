"""Audit streaming: every sealed audit event handed to a sink (a SIEM) at least once, in chain order.

The stream reads each chain past the sink's cursor (``store.audit.cursor``), hands a batch of
JSON lines (the shape of ``countersign audit export``) to the :class:`Sink`, and moves the cursor
to the batch's last seq only once the sink acknowledged it. A batch sent but not acknowledged
(the sink failed, the process died between the two) is sent again: at least once, never ahead of
an earlier seq of its chain. After a restart, streaming resumes after the cursor. Only sealed
events are sent; an unsealed one has no seq and hash yet and is sent once the sequencer sealed it.

One stream runs at a time across replicas, chosen like the sequencer (:mod:`store.leader`). How
a sink talks to the SIEM (HTTP, a rotated file) is the adapter's business (``bot.auditsink``).
Guarantees for operators: docs/audit-streaming.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import Metrics
from store.audit import acknowledge, backlogs, json_line, sealed_after
from store.leader import Alive, leadership, wait

log = logging.getLogger(__name__)

# The stream's leader lock ("ctsgstr" in ASCII), distinct from the sequencer's and the migration lock.
STREAM_LOCK = 0x63747367737472


class SinkUnavailable(Exception):
    """The sink did not acknowledge a batch (an HTTP error or timeout, a failed write): send it again later."""


class Sink(Protocol):
    """Where the stream hands its batches."""

    @property
    def name(self) -> str:
        """The sink's identity (its URL): each sink has its own cursor, so a new one starts from seq 1."""
        ...

    async def send(self, lines: Sequence[str]) -> None:
        """Deliver ``lines`` (JSON objects, no newline), in order; return only once the sink holds them.

        Raises:
            SinkUnavailable: not acknowledged; the stream sends the same events again later.
        """
        ...


class AuditStream:
    """Streams sealed audit events to one sink; ``run`` loops, ``stream_once`` sends what is behind."""

    def __init__(
        self,
        engine: AsyncEngine,
        sink: Sink,
        *,
        now: Callable[[], datetime],
        metrics: Metrics,
        batch: int = 500,
        idle: float = 0.5,
        standby: float = 1.0,
        first_backoff: float = 0.5,
        max_backoff: float = 60.0,
    ) -> None:
        """
        Args:
            engine: the database.
            sink: where the events go.
            now: the clock (when a cursor moved).
            metrics: the lag gauge, per chain, and the failed batches.
            batch: events of one chain per send, at most.
            idle: seconds between passes when nothing is behind. With the seal interval, this bounds
                the lag of a healthy sink.
            standby: seconds between attempts to become the stream (PostgreSQL replicas).
            first_backoff: seconds before the first retry of a batch the sink refused, doubling...
            max_backoff: ...up to this.
        """
        self.engine = engine
        self.sink = sink
        self.now = now
        self.metrics = metrics
        self.batch = batch
        self.idle = idle
        self.standby = standby
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set: as the one stream, or as a standby until it can be."""
        while not stop.is_set():
            try:
                role = f"audit stream: this process streams sealed audit events to {self.sink.name}"
                async with leadership(self.engine, STREAM_LOCK, stop, standby=self.standby, role=role) as alive:
                    if alive is not None:
                        try:
                            await self._lead(stop, alive)
                        finally:
                            # Only the stream knows the lag: a standby must not show its predecessor's.
                            self.metrics.audit_sink_lag.clear()
            except Exception:
                log.exception("audit stream failed; retrying")
                await wait(stop, self.standby)

    async def stream_once(self) -> bool:
        """Send one batch of every chain the sink is behind on, in chain order.

        Returns:
            True if a batch was full (more is waiting).

        Raises:
            SinkUnavailable: a chain's batch was not acknowledged (after every other chain had its turn:
                one chain the sink refuses, say an event too large for it, does not stop the others).
        """
        more = False
        refused: SinkUnavailable | None = None
        for chain in await backlogs(self.engine, self.sink.name):
            self.metrics.audit_sink_lag.labels(chain.tenant).set(chain.lag)
            if chain.lag <= 0:
                continue
            events = await sealed_after(self.engine, chain.tenant, chain.acked, limit=self.batch)
            if not events:
                continue
            first, last = events[0].seq, events[-1].seq
            assert first is not None and last is not None  # sealed events have a seq
            if first != chain.acked + 1:
                # The chain has a gap (rows deleted): send what exists, and say so; verify names the break.
                gap = (chain.acked + 1, first - 1)
                log.error("audit chain %s has no events %d to %d; streaming on from the next", chain.tenant, *gap)
            try:
                await self.sink.send([json_line(event) for event in events])
            except SinkUnavailable as exc:
                self.metrics.audit_sink_failures.inc()  # each batch refused, whichever chain
                refused = refused or exc
                continue
            await acknowledge(self.engine, self.sink.name, chain.tenant, last, now=self.now())
            self.metrics.audit_sink_lag.labels(chain.tenant).set(max(chain.head - last, 0))
            more = more or len(events) == self.batch
        if refused is not None:
            raise refused
        return more

    async def _lead(self, stop: asyncio.Event, alive: Alive) -> None:
        failures = 0
        while not stop.is_set():
            await alive()  # raises when the lock's connection is gone: another replica may stream now
            try:
                more = await self.stream_once()
            except SinkUnavailable as exc:
                failures += 1
                delay = min(self.first_backoff * 2 ** min(failures - 1, 30), self.max_backoff)
                log.warning("audit sink %s did not take a batch (%s); retrying in %.1f s", self.sink.name, exc, delay)
                await wait(stop, delay)
                continue
            failures = 0
            if not more:
                await wait(stop, self.idle)
