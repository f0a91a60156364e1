"""Posts to one Slack channel spaced out: Slack takes about one message a second per channel.

A post whose turn has not come is not waited on inside its batch (that would hold the batch, and
every other channel's posts claimed with it, for as long as the busiest channel's queue): its
delivery is rescheduled for its turn, and the turn is kept for it, so a burst of a hundred cards to
one channel goes out one a second while the rest of the outbox flows. An item that is told to wait
posted nothing, so its retry does not count as an attempt that may have reached Slack (no look-up).

Turns are kept per process (each replica paces its own posts) and forgotten a minute after they were
due, so an item that never came back (another replica took it) cannot hold a channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

FORGET_AFTER = 60.0  # seconds past a kept turn after which it is dropped
EARLY = 0.05  # an item back this much before its turn goes anyway (the outbox's clock and ours differ)


class Pacer:
    def __init__(self, rate: float, *, now: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a pacer needs a positive rate (0 means: no pacer)")
        self.interval = 1.0 / rate
        self._now = now
        self._free: dict[str, float] = {}  # channel -> when its next untaken turn is
        self._kept: dict[tuple[str, Hashable], float] = {}  # (channel, item) -> its turn

    def wait(self, channels: Iterable[str], ticket: Hashable) -> float:
        """Seconds until ``ticket`` may post to every one of ``channels`` (0: now). A turn it is given
        is kept for it: call again when the wait is over, and it goes."""
        now = self._now()
        self._forget(now)
        waits = [self._turn(channel, ticket, now) for channel in dict.fromkeys(channels)]
        return max(waits, default=0.0)

    def _turn(self, channel: str, ticket: Hashable, now: float) -> float:
        kept = self._kept.get((channel, ticket))
        if kept is not None:
            if kept - now <= EARLY:
                del self._kept[(channel, ticket)]
                return 0.0
            return kept - now
        turn = max(self._free.get(channel, now), now)
        self._free[channel] = turn + self.interval
        if turn - now <= EARLY:
            return 0.0
        self._kept[(channel, ticket)] = turn
        return turn - now

    def _forget(self, now: float) -> None:
        for key in [k for k, turn in self._kept.items() if turn < now - FORGET_AFTER]:
            del self._kept[key]
        for channel in [c for c, free in self._free.items() if free < now]:
            del self._free[channel]
