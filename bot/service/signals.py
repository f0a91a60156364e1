"""After-commit news from the use cases to the loops that act on it, in this process.

Built first and handed to both sides, so neither needs the other: a use case says "something
was queued" or "a stage opened, due at T" once its transaction commits; the outbox worker waits
on :attr:`Signals.outbox`, the deadline scheduler on :attr:`Signals.deadlines`, and long polls
on :attr:`Signals.decisions`. Other replicas learn the same from the database (the worker's and
scheduler's periodic reads, the long poll's backoff), so a lost signal only costs latency.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.waiters import DecisionBus


class Signals:
    def __init__(self) -> None:
        self.decisions = DecisionBus()
        self.outbox = asyncio.Event()
        self.deadlines = asyncio.Event()
        self._earliest: datetime | None = None

    def queued(self) -> None:
        """Outbox items committed: the worker should look now rather than at its next idle tick."""
        self.outbox.set()

    def decided(self, request_id: str) -> None:
        """A request reached a final status: wake this process's long polls on it."""
        self.decisions.notify(request_id)

    def stage_opened(self, at: datetime) -> None:
        """A stage opened whose deadline or reminder is due at ``at``."""
        if self._earliest is None or at < self._earliest:
            self._earliest = at
            self.deadlines.set()

    def take_stage_opened(self) -> datetime | None:
        """The earliest ``at`` announced since the last call (None if none), clearing it."""
        at, self._earliest = self._earliest, None
        self.deadlines.clear()
        return at
