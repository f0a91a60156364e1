"""Due stages are claimed and fired many per unit of work: mixed outcomes in one batch, a vote
racing the batch, replicas splitting the work, and a batch that fails falling back to one at a time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FrozenClock
from bot.ids import ActionId
from bot.service.deadlines import DeadlineKeeper, Fired
from bot.service.models import CreateRequest
from bot.service.openings import Escalated
from bot.service.transitions import Transitions, Unit
from policy import Choice, Status
from store.models import Request
from store.uow import uow
from tests.dbsupport import POSTGRES_SKIP_REASON, database_url, postgres_url
from tests.deadlines.conftest import started
from tests.deadlines.test_deadlines import REFUND, SENIOR, audit_kinds
from tests.e2e.conftest import BEN, TIER1, Stack

FAY = "U0FAY"
CREDIT = {"amount": 40, "customer": {"tier": "standard"}}


async def ask(stack: Stack, action: str, params: dict[str, Any]) -> str:
    _, req = await stack.agent().ask(action, params)
    request_id: str = req["id"]
    return request_id


async def status_of(stack: Stack, request_id: str) -> tuple[str, int, str | None]:
    _, got = await stack.agent().call("GET", f"/v1/requests/{request_id}")
    return got["status"], got["stage"], (got.get("decision") or {}).get("outcome")


async def mixed(stack: Stack, clock: FrozenClock) -> dict[str, str]:
    """Requests whose deadlines all come due together at the returned clock, in five situations:
    ``last`` at its last stage (expires, rejected), ``credit`` (expires, approved by on_timeout),
    ``up1``/``up2`` at their first stage (escalate), and ``raced`` at its first stage (for a vote)."""
    ids = {"credit": await ask(stack, "send_goodwill_credit", CREDIT)}
    ids["last"] = await ask(stack, "process_refund", {**REFUND, "order_id": "L-1"})
    for _ in range(2):  # walk the first refund to its last stage (seniors)
        clock.advance(5 * 60)
        await stack.runtime.keeper.run_due()
    for name in ("up1", "up2", "raced"):
        ids[name] = await ask(stack, "process_refund", {**REFUND, "order_id": f"M-{name}"})
    clock.advance(20 * 60)  # 30 minutes in: every one of them is due
    return ids


async def test_one_batch_of_mixed_outcomes(timed: Stack, clock: FrozenClock) -> None:
    ids = await mixed(timed, clock)
    await timed.slack.wait_for_message(TIER1, text="M-raced", action_id=ActionId.APPROVE)
    await timed.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="M-raced")
    _, decided = await timed.agent().call("GET", f"/v1/requests/{ids['raced']}", wait=5)
    assert decided["status"] == "approved"

    fired = await timed.runtime.keeper.run_due()

    by_id = {f.request_id: f for f in fired}
    assert len(fired) == len(by_id) == 4 and ids["raced"] not in by_id  # decided before: never claimed
    assert (by_id[ids["last"]].action, by_id[ids["last"]].detail) == ("expired", "rejected")
    assert (by_id[ids["credit"]].action, by_id[ids["credit"]].detail) == ("expired", "approved")
    for name in ("up1", "up2"):
        assert (by_id[ids[name]].action, by_id[ids[name]].detail) == ("escalated", "support_tier_2")
        assert await status_of(timed, ids[name]) == ("pending", 1, None)
        await timed.slack.wait_for_message("C0SUPPORT2", text=f"M-{name}", action_id=ActionId.APPROVE)
    assert await status_of(timed, ids["last"]) == ("expired", 2, "rejected")
    assert await status_of(timed, ids["credit"]) == ("expired", 0, "approved")
    await timed.slack.wait_for_message(
        SENIOR, text="L-1", predicate=lambda m: "Expired" in repr(m.blocks) and ActionId.APPROVE not in repr(m.blocks)
    )
    assert await timed.runtime.keeper.run_due() == []  # nothing fires twice
    for name, kind in (("last", "request.expired"), ("credit", "request.expired"), ("up1", "request.escalated")):
        assert (await audit_kinds(timed, "acme-support", ids[name])).count(kind) == 1
    metric = timed.runtime.metrics.registry.get_sample_value
    assert metric("countersign_timeouts_total", {"tenant": "acme-support", "outcome": "approved"}) == 1


async def test_a_batch_leaves_a_request_being_voted_on_to_the_vote(tmp_path: Path) -> None:
    """PostgreSQL: a vote holds its request's row lock while the deadlines come due. The batch locks
    requests before it claims their stages (the order a vote or an edit takes them in, so the two can
    never deadlock): it skips the locked one, fires the rest, and the vote then decides its request."""
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    clock = FrozenClock()
    async with database_url("postgres", tmp_path) as url, started(url, clock) as stack:
        ids = await mixed(stack, clock)
        runtime = stack.runtime
        async with uow(runtime.sessionmaker) as tx:
            row = await tx.requests.get_for_update("acme-support", ids["raced"])  # the vote's lock
            # Never blocked by it. A request whose row something else holds for a moment (the outbox recording
            # a card) is left to the next sweep too, as the scheduler would run it: sweep until the four fired.
            fired: list[Fired] = []
            for _ in range(100):
                fired += await asyncio.wait_for(runtime.keeper.run_due(), 10)
                if len(fired) >= 4:
                    break
                await asyncio.sleep(0.05)
            unit = Unit(tx, clock.now())
            await tx.votes.add_vote(row.id, FAY, Choice.APPROVE, stage=row.stage, now=unit.now)
            await runtime.transitions.decide_by_votes(
                unit, row, outcome=Status.APPROVED, by=FAY, reason=None, pool="support_tier_1"
            )
        runtime.transitions.announce(unit, queued=True, due=None)

        by_id = {f.request_id: f for f in fired}
        assert len(fired) == len(by_id) == 4 and ids["raced"] not in by_id
        assert [by_id[ids[n]].action for n in ("last", "credit", "up1", "up2")] == ["expired"] * 2 + ["escalated"] * 2
        assert await runtime.keeper.run_due() == []  # the voted request's stage never fires
        assert await status_of(stack, ids["raced"]) == ("approved", 0, "approved")
        kinds = await audit_kinds(stack, "acme-support", ids["raced"])
        assert "request.expired" not in kinds and "request.escalated" not in kinds
        assert await status_of(stack, ids["up1"]) == ("pending", 1, None)
        assert await status_of(stack, ids["last"]) == ("expired", 2, "rejected")


async def test_two_keepers_racing_over_one_set_of_due_stages_fire_each_once(tmp_path: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    start = datetime.now(UTC)
    clock_a, clock_b = FrozenClock(start), FrozenClock(start)
    async with database_url("postgres", tmp_path) as url, started(url, clock_a) as a, started(url, clock_b) as b:
        submits = [
            a.runtime.intake.submit(
                "acme-support", "agent", CreateRequest(action="process_refund", params={**REFUND, "order_id": f"K{n}"})
            )
            for n in range(300)
        ]
        ids = {resource.id for resource, _ in await asyncio.gather(*submits)}
        clock_a.advance(5 * 60)
        clock_b.advance(5 * 60)
        # Small batches, so the two claim over and over at the same moments.
        fired_a, fired_b = await asyncio.gather(a.runtime.keeper.run_due(batch=10), b.runtime.keeper.run_due(batch=10))

        assert fired_a and fired_b  # they split the work ...
        assert not {f.request_id for f in fired_a} & {f.request_id for f in fired_b}  # ... without overlap
        assert sorted(f.request_id for f in [*fired_a, *fired_b]) == sorted(ids)
        assert {f.action for f in [*fired_a, *fired_b]} == {"escalated"}
        async with uow(a.runtime.sessionmaker, read_only=True) as tx:
            escalated: Counter[str] = Counter()
            for request_id in ids:
                kinds = [r.kind for r in await tx.audit.for_request("acme-support", request_id)]
                escalated[request_id] = kinds.count("request.escalated")
                assert [s.index for s in await tx.stages.stages(request_id)] == [0, 1]
                assert (await tx.requests.get_or_raise("acme-support", request_id)).stage == 1
        assert set(escalated.values()) == {1}
        assert await a.runtime.keeper.run_due() == [] and await b.runtime.keeper.run_due() == []


class Faulty(Transitions):
    """Transitions that fail whenever a request in ``poisoned`` is among those escalated."""

    def __init__(self, *, poisoned: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poisoned = poisoned

    async def escalate_many(
        self, unit: Unit, requests: Sequence[tuple[Request, Sequence[str]]], **kwargs: Any
    ) -> list[Escalated | None]:
        if any(row.id in self.poisoned for row, _ in requests):
            raise RuntimeError("poisoned")
        return await super().escalate_many(unit, requests, **kwargs)


async def test_a_failing_batch_falls_back_to_one_at_a_time_and_loses_no_other(timed: Stack, clock: FrozenClock) -> None:
    ids = [await ask(timed, "process_refund", {**REFUND, "order_id": f"P-{n}"}) for n in range(5)]
    runtime = timed.runtime
    poisoned = {ids[2]}
    faulty = Faulty(
        poisoned=poisoned, sessionmaker=runtime.sessionmaker, policies=runtime.policies, signals=runtime.signals,
        metrics=runtime.metrics,
    )  # fmt: skip
    keeper = DeadlineKeeper(sessionmaker=runtime.sessionmaker, clock=clock, transitions=faulty)
    clock.advance(5 * 60)

    fired = await keeper.run_due()

    assert sorted(f.request_id for f in fired) == sorted(set(ids) - poisoned)
    assert {f.action for f in fired} == {"escalated"}
    assert await status_of(timed, ids[2]) == ("pending", 0, None)  # not lost: still due
    poisoned.clear()
    assert [(f.request_id, f.action) for f in await keeper.run_due()] == [(ids[2], "escalated")]
    for request_id in ids:
        assert (await audit_kinds(timed, "acme-support", request_id)).count("request.escalated") == 1
        assert await status_of(timed, request_id) == ("pending", 1, None)
