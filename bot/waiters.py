"""Long polls (``Prefer: wait=N``) that return the moment a decision lands.

In one process a decision wakes its waiters at once through an asyncio event. Another
replica's decision is seen by one periodic read of every request waited on in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d+)", re.IGNORECASE)
MAX_WAIT = 60


def parse_prefer_wait(header: str | None) -> int:
    """Seconds from ``Prefer: wait=N`` (RFC 7240), capped at 60; 0 if absent or unreadable."""
    if not header:
        return 0
    m = _PREFER_WAIT.search(header)
    return min(int(m.group(1)), MAX_WAIT) if m else 0


class DecisionBus:
    """Wakes long polls in this process when a request is decided.

    A decision made here wakes its waiters at once (:meth:`notify`). Another replica's decision is
    found by one read of every request waited on here (:meth:`watched`), made every fraction of a
    second by :meth:`bot.service.intake.Intake.watch_decisions`, not by each waiter polling its own
    row: a thousand waiting agents cost one query a tick, not a thousand.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}
        self._released = False

    def release_all(self) -> None:
        """Shutting down: every long poll answers now, as the request is (the agent polls again, on a
        replica that is up), and any that starts from here on does not wait."""
        self._released = True
        for event in self._events.values():
            event.set()

    def notify(self, request_id: str) -> None:
        event = self._events.get(request_id)
        if event is not None:
            event.set()

    def watched(self) -> list[str]:
        """The requests somebody here is waiting on."""
        return list(self._events)

    @contextlib.contextmanager
    def watching(self, request_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``request_id`` is decided, for as long as the block runs. Enter it before
        reading the request: a decision that commits after the read then still sets it."""
        event = self._events.setdefault(request_id, asyncio.Event())
        if self._released:
            event.set()
        self._waiters[request_id] = self._waiters.get(request_id, 0) + 1
        try:
            yield event
        finally:
            self._waiters[request_id] -= 1
            if not self._waiters[request_id]:
                del self._waiters[request_id]
                self._events.pop(request_id, None)
