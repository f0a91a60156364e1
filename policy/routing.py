"""Which stages can serve: pools without a channel, without enough present members, skipped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policy.types import PoolView, QuorumPlan, StagePlan
from policy.votes import match_quorum


@dataclass(frozen=True, slots=True)
class Skipped:
    pool: str
    why: str


@dataclass(frozen=True, slots=True)
class Route:
    """The stages that will be asked, in order (re-indexed from 0), and the ones skipped."""

    stages: tuple[StagePlan, ...]
    skipped: tuple[Skipped, ...]

    @property
    def fails_closed(self) -> bool:
        return not self.stages

    def explain(self) -> str:
        """Why nothing can serve, or what was skipped, in words."""
        return "; ".join(f"pool '{s.pool}' {s.why}" for s in self.skipped)


def cannot_serve(pool: PoolView | None, approvals: int, on_behalf_of: str | None) -> str | None:
    """Why a pool cannot serve a request needing ``approvals`` votes, or None if it can.

    The quorum is judged up front: the person the agent acts for and members marked away
    do not count; a delegate standing in for an away member does.
    """
    if pool is None:
        return "is not defined"
    if not pool.channel:
        return "has no channel"
    if not pool.members:
        return "has no members"
    if not pool.eligible(exclude=None):
        return "has every member away"
    eligible = len(pool.eligible(exclude=on_behalf_of))
    if eligible < approvals:
        return f"has {eligible} eligible member(s) for {approvals} approval(s)"
    return None


def route(
    stages: Sequence[StagePlan], approvals: int, pools: Mapping[str, PoolView], on_behalf_of: str | None
) -> Route:
    """Keep the stages whose pool can serve, in chain order."""
    kept: list[StagePlan] = []
    skipped: list[Skipped] = []
    for stage in stages:
        why = cannot_serve(pools.get(stage.pool), approvals, on_behalf_of)
        if why:
            skipped.append(Skipped(stage.pool, why))
        else:
            kept.append(stage.model_copy(update={"index": len(kept)}))
    return Route(tuple(kept), tuple(skipped))


def next_stage(
    chain: Sequence[StagePlan],
    reached: Sequence[str],
    approvals: int,
    pools: Mapping[str, PoolView],
    on_behalf_of: str | None,
) -> tuple[StagePlan | None, tuple[Skipped, ...]]:
    """The stage to open when the current one runs out of time: the first pool of the chain
    after those already reached that can serve, or None when the chain is exhausted.

    Args:
        chain: the rule's full chain (``reviewer_pool -> fallback -> escalate_to``).
        reached: pools of the stages opened so far, in order.
        approvals: approvals the request needs (the quorum is judged up front, as at intake).
        pools: the tenant's pools as they are now.
        on_behalf_of: the person the agent acts for (cannot vote, so does not count).
    """
    last = reached[-1] if reached else None
    names = [s.pool for s in chain]
    start = names.index(last) + 1 if last in names else len(names)
    remaining = [s for s in chain[start:] if s.pool not in reached]
    plan = route(remaining, approvals, pools, on_behalf_of)
    return (plan.stages[0] if plan.stages else None), plan.skipped


@dataclass(frozen=True, slots=True)
class QuorumRoute:
    """Each quorum line's route (its stages that can serve), and why the quorum cannot be met, if it cannot."""

    lines: tuple[tuple[QuorumPlan, Route], ...]
    short: str = ""  # set when the lines' first pools cannot be met by distinct eligible people

    @property
    def fails_closed(self) -> bool:
        return bool(self.short) or any(r.fails_closed for _, r in self.lines)

    def explain(self) -> str:
        parts = [
            f"require line {plan.line + 1}: {r.explain() or 'no pool'}" for plan, r in self.lines if r.fails_closed
        ]
        return "; ".join([*parts, *([self.short] if self.short else [])])


def route_quorum(lines: Sequence[QuorumPlan], pools: Mapping[str, PoolView], on_behalf_of: str | None) -> QuorumRoute:
    """Route each line as a chain of its own (its pools that cannot serve skipped), then check up front
    that the lines' first serving pools can be met by distinct eligible people (one person counts once)."""
    routed = tuple((plan, route(plan.stages, plan.approvals, pools, on_behalf_of)) for plan in lines)
    if any(r.fails_closed for _, r in routed):
        return QuorumRoute(routed)
    seats = [(plan.approvals, pools[r.stages[0].pool].eligible(exclude=on_behalf_of)) for plan, r in routed]
    people = sorted(frozenset().union(*(m for _, m in seats)))
    matched = sum(len(f) for f in match_quorum(seats, people))
    needed = sum(n for n, _ in seats)
    if matched < needed:
        short = (
            f"the pools' eligible members can fill only {matched} of the {needed} approvals (one person counts once)"
        )
        return QuorumRoute(routed, short)
    return QuorumRoute(routed)
