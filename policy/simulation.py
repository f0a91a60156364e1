"""What a candidate manifest would have done to requests already decided: the pure half of
``countersign simulate`` (and of a policy change's approval card).

Each recorded request is decided again by the candidate policy exactly as intake would decide it
(same params as the agent sent them, same context; a sampled action draws from the request's id, so
a replay is repeatable) and compared with the route it actually took (auto-approved, denied, or
reviewed starting in which pool with how many approvals), or with the route a baseline policy gives
it: a change's approval card compares the change with the version it edits. Nothing here reads a clock or a database:
the caller brings the history.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policy.decide import Verdict, decide
from policy.loader import TenantPolicy
from policy.types import ActionRequest, Outcome, RequestContext

CONTEXT_KEYS = frozenset(RequestContext.model_fields)


@dataclass(frozen=True, slots=True)
class Route:
    """Where the policy sends a request: its outcome and, when reviewed, the first pool and approvals."""

    outcome: Outcome
    pool: str | None = None
    approvals: int = 0

    def __str__(self) -> str:
        if self.outcome is Outcome.REVIEW:
            return (
                f"review by {self.pool or '(no pool)'} ({self.approvals} approval{'s' if self.approvals != 1 else ''})"
            )
        return "auto-approve" if self.outcome is Outcome.AUTO_APPROVE else "deny"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A stored request, as it was decided."""

    id: str
    action: str
    params: Mapping[str, Any]  # as the agent sent them (before any reviewer's edit)
    context: Mapping[str, Any]
    route: Route
    created_at: datetime
    human_seconds: float | None = None  # request → a person's decision, when a person decided it
    approved_by_person: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """Requests of one action that the candidate routes differently, all the same way."""

    action: str
    before: Route
    after: Route
    count: int
    examples: tuple[str, ...]  # a few request ids, to look at with /hitl show

    @property
    def kind(self) -> str:
        return change_kind(self.before, self.after)


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """One pool's cards over the window, as recorded and as the candidate would have it."""

    pool: str
    cards_before: int
    cards_after: int
    decision_p95_seconds: float | None  # of the pool's recorded human decisions: what to expect there


@dataclass(slots=True)
class Simulation:
    tenant: str
    requests: int = 0
    unchanged: int = 0
    changes: list[Change] = field(default_factory=list)
    pools: list[PoolLoad] = field(default_factory=list)
    approved_now_auto: int = 0  # a person approved them; the candidate would not have asked anyone

    def count(self, kind: str) -> int:
        return sum(c.count for c in self.changes if c.kind == kind)

    @property
    def cards_added(self) -> int:
        return sum(
            c.count
            for c in self.changes
            if c.after.outcome is Outcome.REVIEW and c.before.outcome is not Outcome.REVIEW
        )

    @property
    def cards_removed(self) -> int:
        return sum(
            c.count
            for c in self.changes
            if c.before.outcome is Outcome.REVIEW and c.after.outcome is not Outcome.REVIEW
        )

    @property
    def newly_denied(self) -> int:
        return sum(c.count for c in self.changes if c.after.outcome is Outcome.DENY)

    def headline(self, days: float) -> str:
        """One line for a change-approval card: what the candidate would have changed over the window."""
        net = self.cards_added - self.cards_removed
        cards = f"{abs(net)} {'more' if net > 0 else 'fewer'} cards" if net else "as many cards"
        return (
            f"over the last {_days(days)}: {cards}, {self.newly_denied} requests newly denied, "
            f"{self.count('other pool')} sent to another pool, {self.count('more approvals')} needing more approvals, "
            f"{self.approved_now_auto} approved requests that would now be auto-approved"
        )


def change_kind(before: Route, after: Route) -> str:
    """What kind of change ``before`` → ``after`` is, in the words a report uses."""
    if before == after:
        return "unchanged"
    if after.outcome is not before.outcome:
        return {Outcome.AUTO_APPROVE: "auto-approve", Outcome.DENY: "deny", Outcome.REVIEW: "review"}[after.outcome]
    if before.pool != after.pool:
        return "other pool"
    return "more approvals" if after.approvals > before.approvals else "fewer approvals"


def route_of(verdict: Verdict) -> Route:
    if verdict.outcome is not Outcome.REVIEW:
        return Route(verdict.outcome)
    first = verdict.quorum[0].stages[0].pool if verdict.quorum else (verdict.stages[0].pool if verdict.stages else None)
    return Route(Outcome.REVIEW, first, verdict.approvals)


def draw_for(request_id: str) -> float:
    """A sample draw in [0, 1) fixed by the request id: a sampled action replays the same way every time."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64


def replay(candidate: TenantPolicy, recorded: Recorded) -> Route:
    context = RequestContext(**{k: v for k, v in recorded.context.items() if k in CONTEXT_KEYS})
    request = ActionRequest(tenant=candidate.tenant, action=recorded.action, params=recorded.params, context=context)
    return route_of(decide(candidate, request, sample_draw=draw_for(recorded.id)))


def simulate(
    candidate: TenantPolicy, history: Iterable[Recorded], *, examples: int = 3, baseline: TenantPolicy | None = None
) -> Simulation:
    """Every recorded request decided again by ``candidate``, compared with the route it took; or, given a
    ``baseline``, with the route the baseline gives it: the effect of a change alone, whichever versions
    were in force when the requests came (a change's approval card compares it with the version it edits)."""
    result = Simulation(candidate.tenant)
    grouped: dict[tuple[str, Route, Route], list[str]] = defaultdict(list)
    before_cards: Counter[str] = Counter()
    after_cards: Counter[str] = Counter()
    seconds: dict[str, list[float]] = defaultdict(list)
    for recorded in history:
        result.requests += 1
        after = replay(candidate, recorded)
        before = recorded.route if baseline is None else replay(baseline, recorded)
        if before.outcome is Outcome.REVIEW and before.pool:
            before_cards[before.pool] += 1
        taken = recorded.route  # how long people took is known where the request was actually reviewed
        if taken.outcome is Outcome.REVIEW and taken.pool and recorded.human_seconds is not None:
            seconds[taken.pool].append(recorded.human_seconds)
        if after.outcome is Outcome.REVIEW and after.pool:
            after_cards[after.pool] += 1
        if after == before:
            result.unchanged += 1
            continue
        grouped[(recorded.action, before, after)].append(recorded.id)
        if recorded.approved_by_person and after.outcome is Outcome.AUTO_APPROVE:
            result.approved_now_auto += 1
    result.changes = sorted(
        (Change(a, b, c, len(ids), tuple(ids[:examples])) for (a, b, c), ids in grouped.items()),
        key=lambda c: (-c.count, c.action, str(c.before), str(c.after)),
    )
    result.pools = [
        PoolLoad(pool, before_cards[pool], after_cards[pool], percentile(seconds.get(pool, []), 0.95))
        for pool in sorted(set(before_cards) | set(after_cards))
    ]
    return result


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (the value at rank ceil(q·n)); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _days(days: float) -> str:
    return f"{days:g} day{'s' if days != 1 else ''}"
