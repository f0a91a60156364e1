"""Which stages can serve: pools without a channel, without enough present members, skipped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policy.types import PoolView, StagePlan


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
    do not count.
    """
    if pool is None:
        return "is not defined"
    if not pool.channel:
        return "has no channel"
    if not pool.members:
        return "has no members"
    if not pool.members - pool.away:
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
