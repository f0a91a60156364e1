"""The concurrency guarantees, on every backend: one decision, no duplicate votes, a gapless chain."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from bot.service.effects import Effect
from policy.types import Choice, Mode, Refusal, Status
from store import DuplicateVote, IdempotencyConflict, NewRequest, Sequencer, uow, verify
from store.models import AuditEvent, OutboxItem, Vote
from store.pools import PoolSeed

from .conftest import T0
from .helpers import click, pending_request, reviews

MANIFEST = """
tenant: acme
pools:
  tier1:
    channel: C1
    members: [{members}]
actions:
  process_refund:
    reviewer_pool: tier1
    approvals: 2
"""


async def test_50_concurrent_clicks_yield_one_decision_and_no_duplicate_votes(engine, sm, tenant, tmp_path):
    # 25 people, each clicking twice (a double click): 50 racing clicks through the real use case.
    users = [f"U{i:02d}" for i in range(25)]
    (tmp_path / "acme.yaml").write_text(MANIFEST.format(members=", ".join(users)))
    async with uow(sm) as tx:
        await tx.pools.seed_from_manifest("acme", {"tier1": PoolSeed(channel="C1", members=tuple(users))}, now=T0)
    request_id = await pending_request(sm, tenant, T0, approvals=2)
    service = reviews(sm, tmp_path, lambda: T0)
    results = await asyncio.gather(*(click(service, tenant, request_id, u, Choice.APPROVE) for u in users * 2))

    counts = Counter(results)
    assert counts["decided"] == 1
    assert counts["counted"] == 1  # the first approval of two
    assert counts["decided"] + counts["counted"] + counts[Refusal.DUPLICATE] + counts[Refusal.ALREADY_DECIDED] == 50
    async with uow(sm) as tx:
        request = await tx.requests.get_or_raise(tenant, request_id)
        votes = await tx.votes.votes(request_id)
        events = await tx.audit.recent(tenant, limit=500)
    decided = [e for e in events if e.kind == "request.decided"]
    refused = [e for e in events if e.kind == "click.refused"]
    assert request.status is Status.APPROVED
    assert request.version == 1
    assert len(votes) == 2 and len({v.user_id for v in votes}) == 2
    assert request.decided_by == votes[-1].user_id
    assert len(decided) == 1
    assert len(refused) == 48  # every refused click is audited
    async with sm() as session:
        outbox = await session.scalar(select(func.count()).select_from(OutboxItem))
        dupes = await session.execute(
            select(Vote.user_id, func.count()).group_by(Vote.request_id, Vote.user_id).having(func.count() > 1)
        )
        notes = await session.scalar(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == Effect.THREAD.value)
        )
    # Two counted votes and one decision each left their effects once; nothing of a refused click did.
    assert notes == 3
    assert outbox == 7
    assert dupes.all() == []
    assert (await verify(engine, tenant)).ok


async def test_50_racing_compare_and_set_have_exactly_one_winner(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    async with uow(sm) as tx:
        seen = await tx.requests.get_or_raise(tenant, request_id)  # everyone read the same version

    async def attempt(i: int) -> bool:
        async with uow(sm) as tx:
            outcome = Status.APPROVED if i % 2 else Status.REJECTED
            return await tx.requests.decide(
                request_id, expected_version=seen.version, outcome=outcome, by=f"U{i}", now=T0
            )

    wins = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert wins.count(True) == 1
    async with uow(sm) as tx:
        request = await tx.requests.get_or_raise(tenant, request_id)
    winner = wins.index(True)
    assert request.decided_by == f"U{winner}"
    assert request.version == seen.version + 1


async def test_concurrent_votes_without_lock_still_unique(sm, tenant):
    request_id = await pending_request(sm, tenant, T0, approvals=99)

    async def vote(user: str) -> bool:
        async with uow(sm) as tx:
            try:
                await tx.votes.add_vote(request_id, user, Choice.APPROVE, stage=0, now=T0)
            except DuplicateVote:
                return False
            return True

    results = await asyncio.gather(*(vote(f"U{i % 10}") for i in range(50)))
    assert results.count(True) == 10
    async with uow(sm) as tx:
        assert sorted(v.user_id for v in await tx.votes.votes(request_id)) == [f"U{i}" for i in range(10)]


async def test_concurrent_audit_appends_keep_each_chain_gapless_and_valid(engine, sm, tenant):
    async def append(tenant_name: str, i: int) -> int:
        async with uow(sm) as tx:
            first = await tx.audit.append(tenant_name, "test.event", now=T0 + timedelta(seconds=i), payload={"i": i})
            await tx.audit.append(tenant_name, "test.event", now=T0 + timedelta(seconds=i), payload={"i": i, "n": 2})
            return first.seq

    jobs = [append("acme", i) for i in range(30)] + [append("globex", i) for i in range(20)]
    await asyncio.gather(*jobs)
    await Sequencer(engine, now=lambda: T0).seal_once()
    for name, n in (("acme", 60), ("globex", 40)):
        async with sm() as session:
            seqs = (await session.scalars(select(AuditEvent.seq).where(AuditEvent.tenant == name))).all()
        assert sorted(seqs) == list(range(1, n + 1))
        result = await verify(engine, name)
        assert result.ok, result.describe()
        assert result.events == n


async def test_first_appends_of_a_brand_new_tenant_race_safely(engine, sm):
    async with uow(sm) as tx:
        await tx.tenants.ensure("fresh", now=T0)

    async def append(i: int) -> None:
        async with uow(sm) as tx:
            await tx.audit.append("fresh", "e", now=T0, payload={"i": i})

    await asyncio.gather(*(append(i) for i in range(20)))
    await Sequencer(engine, now=lambda: T0).seal_once()
    assert (await verify(engine, "fresh")).events == 20


async def test_deadline_fires_once_however_many_sweepers(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)

    async def sweep() -> bool:
        async with uow(sm) as tx:
            return await tx.stages.fire_stage(request_id, 0, T0 + timedelta(minutes=6))

    assert (await asyncio.gather(*(sweep() for _ in range(20)))).count(True) == 1


async def test_concurrent_idempotent_creates_make_one_request(sm, tenant):
    def new(amount: int) -> NewRequest:
        return NewRequest(
            tenant=tenant,
            action="process_refund",
            params={"amount": amount},
            status=Status.PENDING,
            mode=Mode.ASYNC,
            idempotency_key="k-1",
        )

    async def create(i: int) -> tuple[str, bool] | str:
        async with uow(sm) as tx:
            try:
                request, created = await tx.requests.create(new(620 if i % 5 else 1), now=T0)
            except IdempotencyConflict:
                return "conflict"
            return request.id, created

    results = await asyncio.gather(*(create(i) for i in range(20)))
    created = [r for r in results if isinstance(r, tuple) and r[1]]
    assert len(created) <= 1
    ids = {r[0] for r in results if isinstance(r, tuple)}
    assert len(ids) == 1
    # Two bodies raced for one key: whichever lost is a 409, whichever body won.
    assert "conflict" in results
