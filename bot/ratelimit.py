"""Token buckets for the agent API: one per API key and one per tenant, sized by the tenant's manifest.

Computation only: the time comes from an injected ``now`` and nothing is read or written elsewhere,
so a call refused here costs no database work. A bucket answers how long until it holds a token,
which is what a 429's ``Retry-After`` needs (``aiolimiter`` and its kind sleep until then instead).

Buckets live in this process: behind N replicas a tenant gets up to N times its limits. Counting
in the shared database would cost a round trip on every call, the load the limits are there to
bound; a proxy in front of the replicas can add a global limit where one is needed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.policyset import PolicySet
from policy.models import RateLimit, RateLimits

Scope = Literal["key", "tenant"]

# Only keys the store accepted get a bucket, and idle buckets go, so this cap is a backstop.
MAX_BUCKETS = 10_000


class Bucket:
    """Tokens counted at a time; a bucket that has refilled to its capacity is the same as none."""

    __slots__ = ("at", "full_at", "tokens")

    def __init__(self, tokens: float, at: float, full_at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.full_at = full_at

    def level(self, limit: RateLimit, now: float) -> float:
        # A clock stepped back (the wall clock corrected) refills nothing rather than draining the bucket.
        return min(limit.capacity, self.tokens + max(0.0, now - self.at) * limit.rate)


def wait_for(tokens: float, limit: RateLimit) -> float:
    """Seconds until the bucket holds a whole token again: 0 when it does."""
    return 0.0 if tokens >= 1 else (1 - tokens) / limit.rate


@dataclass(frozen=True, slots=True)
class Throttled:
    """A call refused: which bucket was empty and how long until it can take the call."""

    scope: Scope
    retry_after: float

    @property
    def retry_after_seconds(self) -> int:
        """For the ``Retry-After`` header: whole seconds, rounded up, at least 1."""
        return max(1, math.ceil(self.retry_after))


class RateLimiter:
    """Admits an agent's call against its key's bucket and its tenant's, taking a token from both or neither.

    The limits are read from the loaded manifests on every call, so a manifest reload applies at once.
    """

    def __init__(self, policies: PolicySet, *, now: Callable[[], float], max_buckets: int = MAX_BUCKETS) -> None:
        self._policies = policies
        self._now = now
        self._max = max_buckets
        # Least recently used first: idle buckets are found at the front.
        self._buckets: OrderedDict[tuple[Scope, str], Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def limits(self, tenant: str) -> RateLimits:
        policy = self._policies.tenants.get(tenant)
        return policy.manifest.rate_limits if policy is not None else RateLimits()

    def admit(self, tenant: str, key_id: str) -> Throttled | None:
        """None if the call may go on (a token taken from each bucket); otherwise what refused it."""
        limits = self.limits(tenant)
        now = self._now()
        self._forget_idle(now)
        taken: list[tuple[tuple[Scope, str], RateLimit, float]] = []
        scopes: tuple[tuple[Scope, str, RateLimit], ...] = (
            ("key", key_id, limits.per_key),
            ("tenant", tenant, limits.per_tenant),
        )
        for scope, name, limit in scopes:
            bucket = self._buckets.get((scope, name))
            tokens = limit.capacity if bucket is None else bucket.level(limit, now)
            wait = wait_for(tokens, limit)
            if wait > 0:
                return Throttled(scope, wait)
            taken.append(((scope, name), limit, tokens - 1))
        for ident, limit, tokens in taken:
            self._buckets[ident] = Bucket(tokens, now, now + (limit.capacity - tokens) / limit.rate)
            self._buckets.move_to_end(ident)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return None

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            ident, bucket = next(iter(self._buckets.items()))
            if bucket.full_at > now:
                return
            del self._buckets[ident]
