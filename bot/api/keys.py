"""Whose an agent's API key is (its tenant and agent), remembered for a few seconds.

Every agent call names its key, and reading it from the store was a whole read transaction
per call on the intake path. A key that worked is remembered for ``ttl`` seconds, so a key
revoked with ``countersign tenant key revoke`` (another process) stops working within that
time. Unknown keys are never remembered: a key created a moment ago works at once, and
garbage keys cannot fill the memory. Callers that miss together share one look-up: when a key's
time runs out under load, the hundred calls in flight read it once, not a hundred times.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from store.tenants import hash_key

T = TypeVar("T")

# Bounded so that many agents (or a key-spraying client with valid keys) cannot grow it without limit.
MAX_KEYS = 4096


class KeyCache(Generic[T]):
    """Remembers ``hash(key) -> holder`` for keys the store accepted, for ``ttl`` seconds."""

    def __init__(
        self, lookup: Callable[[str], Awaitable[T | None]], *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._known: OrderedDict[str, tuple[T, float]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[T | None]] = {}

    async def holder(self, key: str) -> T | None:
        """Whose the key is, or None if the store does not know it (or it was revoked)."""
        digest = hash_key(key)
        now = self._clock()
        hit = self._known.get(digest)
        if hit is not None and hit[1] > now:
            self._known.move_to_end(digest)
            return hit[0]
        reading = self._reading.get(digest)
        if reading is None:
            reading = self._reading[digest] = asyncio.ensure_future(self._lookup(key))
            reading.add_done_callback(lambda _: self._reading.pop(digest, None))
        # Shielded: a caller that goes away (its client hung up) does not cancel the others' look-up.
        holder = await asyncio.shield(reading)
        if holder is None:
            self._known.pop(digest, None)
            return None
        if self._ttl > 0:
            self._known[digest] = (holder, now + self._ttl)
            self._known.move_to_end(digest)
            while len(self._known) > MAX_KEYS:
                self._known.popitem(last=False)
        return holder
