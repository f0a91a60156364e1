"""Fault injection and rate limiting for the Web API, so tests can force what Slack does on a bad day."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field

from bot.sandbox.clock import Clock


@dataclass
class Fault:
    """One injected answer: ``error`` after ``delay`` (the call does nothing), or with ``error=None`` the
    call's own answer ``delay`` late (it has taken effect: a client that timed out cannot tell)."""

    method: str
    error: str | None = "ratelimited"
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0
    remaining: int | None = 1  # None: until cleared


@dataclass(frozen=True)
class RateLimit:
    """At most ``calls`` per ``per`` seconds, counted per method or per (method, channel)."""

    calls: int
    per: float
    per_channel: bool = False


# chat.postMessage: about 1 message per second per channel (Slack's documented rate limits); the others per tier.
DEFAULT_LIMITS: dict[str, RateLimit] = {
    "chat.postMessage": RateLimit(1, 1.0, per_channel=True),
    "usergroups.users.list": RateLimit(20, 60.0),
    "chat.update": RateLimit(50, 60.0),
    "conversations.info": RateLimit(50, 60.0),
    "conversations.join": RateLimit(50, 60.0),
    "conversations.history": RateLimit(50, 60.0),  # Tier 3 (internal and Marketplace apps)
    "conversations.replies": RateLimit(50, 60.0),  # Tier 3 (internal and Marketplace apps)
}


@dataclass
class Faults:
    clock: Clock
    rate_limiting: bool = False
    limits: dict[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    _queue: list[Fault] = field(default_factory=list)
    _hits: dict[tuple[str, str], deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def fail_next(
        self,
        method: str,
        *,
        error: str | None = "ratelimited",
        status: int | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
    ) -> Fault:
        """Make the next ``times`` calls of ``method`` answer ``error`` (``times=None``: until ``clear``).

        ``ratelimited`` defaults to HTTP 429 with ``Retry-After: 1``; other errors to HTTP 200 like Slack.
        """
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if retry_after is None and status == 429:
            retry_after = 1
        fault = Fault(method, error, status, retry_after, delay, times)
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        self._queue.clear()
        self._hits.clear()

    def set_limit(self, method: str, calls: int, per: float, *, per_channel: bool = False) -> None:
        self.limits[method] = RateLimit(calls, per, per_channel)
        self.rate_limiting = True

    def take_fault(self, method: str) -> Fault | None:
        for fault in self._queue:
            if fault.method in (method, "*"):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._queue.remove(fault)
                return fault
        return None

    def check_rate(self, method: str, channel: str | None) -> int | None:
        """Seconds to wait if this call is over its limit (and is then not counted), else None."""
        limit = self.limits.get(method)
        if not self.rate_limiting or limit is None:
            return None
        key = (method, (channel or "") if limit.per_channel else "")
        hits = self._hits[key]
        now = self.clock.now()
        while hits and hits[0] <= now - limit.per:
            hits.popleft()
        if len(hits) >= limit.calls:
            return max(1, math.ceil(hits[0] + limit.per - now))
        hits.append(now)
        return None
