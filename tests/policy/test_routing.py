"""Which pools can serve: channel, members, away, and the quorum judged up front."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policy import PoolView, StagePlan, cannot_serve, route
from policy.routing import next_stage


def pool(members: set[str], channel: str | None = "C1", away: set[str] | None = None) -> PoolView:
    return PoolView(name="p", channel=channel, members=frozenset(members), away=frozenset(away or set()))


@pytest.mark.parametrize(
    ("view", "approvals", "on_behalf_of", "why"),
    [
        (pool({"U1"}), 1, None, None),
        (None, 1, None, "is not defined"),
        (pool({"U1"}, channel=None), 1, None, "has no channel"),
        (pool(set()), 1, None, "has no members"),
        (pool({"U1", "U2"}, away={"U1", "U2"}), 1, None, "has every member away"),
        (pool({"U1", "U2"}, away={"U1"}), 2, None, "has 1 eligible member(s) for 2 approval(s)"),
        (pool({"U1", "U2"}), 2, "U1", "has 1 eligible member(s) for 2 approval(s)"),  # the person acted for can't vote
        (pool({"U1", "U2", "U3"}), 2, "U1", None),
        (pool({"U1"}), 1, "U1", "has 0 eligible member(s) for 1 approval(s)"),
    ],
)
def test_cannot_serve(view: PoolView | None, approvals: int, on_behalf_of: str | None, why: str | None) -> None:
    assert cannot_serve(view, approvals, on_behalf_of) == why


def test_route_skips_pools_that_cannot_serve_and_reindexes() -> None:
    stages = [StagePlan(index=i, pool=p, timeout=timedelta(minutes=5), remind_after=None) for i, p in enumerate("abc")]
    pools = {"a": pool({"U1"}, channel=None), "c": pool({"U2"})}
    result = route(stages, 1, pools, None)
    assert [(s.index, s.pool) for s in result.stages] == [(0, "c")]
    assert result.explain() == "pool 'a' has no channel; pool 'b' is not defined"
    assert not result.fails_closed


def test_route_fails_closed_when_nothing_can_serve() -> None:
    stages = [StagePlan(index=0, pool="a", timeout=timedelta(minutes=5), remind_after=None)]
    result = route(stages, 2, {"a": pool({"U1"})}, None)
    assert result.fails_closed
    assert "has 1 eligible member(s) for 2 approval(s)" in result.explain()


CHAIN = [
    StagePlan(index=i, pool=p, timeout=timedelta(minutes=5), remind_after=None)
    for i, p in enumerate(["t1", "t2", "t3"])
]


@pytest.mark.parametrize(
    ("reached", "pools", "want", "skipped"),
    [
        (["t1"], {"t2": pool({"U2"}), "t3": pool({"U3"})}, "t2", []),
        (["t1"], {"t2": pool({"U2"}, away={"U2"}), "t3": pool({"U3"})}, "t3", ["t2"]),  # everyone away: skipped
        (["t1"], {"t3": pool({"U3"})}, "t3", ["t2"]),  # t2 was deleted
        (["t1", "t2"], {"t3": pool({"U3"})}, "t3", []),
        (["t1", "t2", "t3"], {}, None, []),  # chain exhausted: on_timeout decides
        (["t1"], {"t2": pool({"U2"}, channel=None), "t3": pool(set())}, None, ["t2", "t3"]),
        (["t2"], {"t3": pool({"U3"})}, "t3", []),  # t1 was skipped at intake
    ],
)
def test_next_stage(reached: list[str], pools: dict[str, PoolView], want: str | None, skipped: list[str]) -> None:
    stage, passed_over = next_stage(CHAIN, reached, 1, pools, None)
    assert (stage.pool if stage else None) == want
    assert [s.pool for s in passed_over] == skipped


def test_next_stage_judges_the_quorum_without_the_person_acted_for() -> None:
    stage, _ = next_stage(CHAIN, ["t1"], 1, {"t2": pool({"U2"}), "t3": pool({"U3"})}, "U2")
    assert stage is not None and stage.pool == "t3"
