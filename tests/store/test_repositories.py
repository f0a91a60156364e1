"""Tenants, keys, pools and requests: the behaviour the service builds on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policy.types import Choice, Mode, Status
from store import (
    DuplicateVote,
    IdempotencyConflict,
    InvalidName,
    NewRequest,
    NotFound,
    PoolExists,
    PoolSeed,
    TenantUnknown,
    hash_key,
    uow,
)
from store.models import ApiKey, ConfigChange

from .conftest import T0
from .helpers import pending_request


async def test_tenant_names_are_checked(sm):
    with pytest.raises(InvalidName):
        async with uow(sm) as tx:
            await tx.tenants.ensure("Acme Corp", now=T0)
    async with uow(sm) as tx:
        await tx.tenants.ensure("acme-support_2", now=T0)
        await tx.tenants.ensure("acme-support_2", now=T0)
        assert await tx.tenants.names() == ["acme-support_2"]


async def test_api_keys_are_hashed_listed_revoked(sm, tenant, ids):
    async with uow(sm, new_id=ids) as tx:
        issued = await tx.tenants.create_api_key(tenant, now=T0)
        other = await tx.tenants.create_api_key("globex", now=T0)
    assert issued.key.startswith("cs_acme_") and len(issued.key) == len("cs_acme_") + 48
    async with uow(sm) as tx:
        assert await tx.tenants.authenticate(issued.key) == "acme"
        assert await tx.tenants.authenticate(other.key) == "globex"
        assert await tx.tenants.authenticate(issued.key + "x") is None
        stored = (await tx.session.scalars(select(ApiKey.key_hash))).all()
        assert hash_key(issued.key) in stored and issued.key not in stored
        [listed] = await tx.tenants.list_api_keys(tenant)
        assert listed.prefix == issued.prefix and listed.revoked_at is None
    async with uow(sm) as tx:
        with pytest.raises(NotFound):
            await tx.tenants.revoke_api_key(tenant, other.id, now=T0)  # another tenant's key
        await tx.tenants.revoke_api_key(tenant, issued.prefix, now=T0 + timedelta(minutes=1))
    async with uow(sm) as tx:
        assert await tx.tenants.authenticate(issued.key) is None
        [listed] = await tx.tenants.list_api_keys(tenant)
        assert listed.revoked_at == T0 + timedelta(minutes=1)
        kinds = [e.kind for e in await tx.audit.recent(tenant)]
        assert kinds == ["tenant.key_revoked", "tenant.key_created"]
        assert all(issued.key not in str(e.payload) for e in await tx.audit.recent(tenant))


async def test_callback_secret_is_created_once(sm, tenant):
    async with uow(sm) as tx:
        first = await tx.tenants.callback_secret(tenant, now=T0)
    async with uow(sm) as tx:
        assert await tx.tenants.callback_secret(tenant, now=T0) == first
        with pytest.raises(TenantUnknown):
            await tx.tenants.callback_secret("nobody", now=T0)
    assert len(first) == 64


async def test_pool_changes_are_versioned_audited_and_replayable(sm, tenant):
    t = [T0 + timedelta(minutes=i) for i in range(10)]
    async with uow(sm) as tx:
        await tx.pools.create(tenant, "tier1", now=t[1], actor="UADMIN", channel="C1", members=["U1", "U2"])
    async with uow(sm) as tx:
        assert await tx.pools.add_members(tenant, "tier1", ["U2", "U3"], now=t[2], actor="UADMIN") == ["U3"]
        assert await tx.pools.set_away(tenant, "tier1", ["U1", "U9"], True, now=t[3], actor="U1") == ["U1"]
        assert await tx.pools.remove_members(tenant, "tier1", ["U2"], now=t[4], actor="UADMIN") == ["U2"]
        await tx.pools.set_channel(tenant, "tier1", "C9", now=t[5], actor="UADMIN")
        assert await tx.pools.set_away(tenant, "tier1", ["U1"], False, now=t[6], actor="U1") == ["U1"]
        with pytest.raises(PoolExists):
            await tx.pools.create(tenant, "tier1", now=t[6], actor=None)
        with pytest.raises(NotFound):
            await tx.pools.add_members("globex", "tier1", ["U1"], now=t[6], actor=None)

    async with uow(sm) as tx:
        view = await tx.pools.get_or_raise(tenant, "tier1")
        assert (view.channel, view.members, view.away) == ("C9", {"U1", "U3"}, frozenset())
        changes = await tx.pools.changes(tenant)
        assert [c.version for c in changes] == [1, 2, 3, 4, 5, 6]
        assert [c.kind for c in changes] == [
            "pool.create",
            "pool.add",
            "pool.away",
            "pool.remove",
            "pool.channel",
            "pool.back",
        ]
        assert await tx.pools.membership_at(tenant, "tier1", t[0]) is None
        at3 = await tx.pools.membership_at(tenant, "tier1", t[3])
        assert at3 is not None and at3.members == {"U1", "U2", "U3"} and at3.away == {"U1"} and at3.channel == "C1"
        at4 = await tx.pools.membership_at(tenant, "tier1", t[4] + timedelta(seconds=30))
        assert at4 is not None and at4.members == {"U1", "U3"} and at4.eligible(exclude="U3") == frozenset()
        now = await tx.pools.membership_at(tenant, "tier1", t[9])
        assert now == view
        audited = [e.kind for e in reversed(await tx.audit.recent(tenant))]
        assert audited[0] == "config.pool.create" and len(audited) == 6


async def test_manifest_seeds_only_new_pools(sm, tenant):
    seeds = {"tier1": PoolSeed(channel="C1", members=("U1",)), "tier2": PoolSeed(usergroup="S1")}
    async with uow(sm) as tx:
        assert await tx.pools.seed_from_manifest(tenant, seeds, now=T0) == ["tier1", "tier2"]
        await tx.pools.add_members(tenant, "tier1", ["U2"], now=T0 + timedelta(minutes=1), actor="UADMIN")
    async with uow(sm) as tx:
        # A reload keeps what Slack changed.
        assert await tx.pools.seed_from_manifest(tenant, seeds, now=T0 + timedelta(minutes=2)) == []
        pools = await tx.pools.views(tenant)
        assert pools["tier1"].members == {"U1", "U2"} and pools["tier2"].members == frozenset()
        replay = await tx.pools.membership_at(tenant, "tier1", T0 + timedelta(minutes=5))
        assert replay == pools["tier1"]
        assert (await tx.session.scalars(select(ConfigChange.kind))).all() == ["manifest.load", "pool.add"]


def _new(tenant: str, **kw: object) -> NewRequest:
    base: dict[str, object] = {
        "tenant": tenant,
        "action": "process_refund",
        "params": {"amount": 620},
        "status": Status.PENDING,
        "mode": Mode.ASYNC,
    }
    base.update(kw)
    return NewRequest(**base)  # type: ignore[arg-type]


async def test_idempotent_create_and_conflict(sm, tenant, ids):
    async with uow(sm, new_id=ids) as tx:
        first, created = await tx.requests.create(_new(tenant, idempotency_key="k"), now=T0)
        assert created and first.id == "id000001" and first.version == 0
        again, created = await tx.requests.create(_new(tenant, idempotency_key="k"), now=T0)
        assert not created and again.id == first.id
        with pytest.raises(IdempotencyConflict):
            await tx.requests.create(_new(tenant, idempotency_key="k", params={"amount": 1}), now=T0)
        # Keys are per tenant.
        other, created = await tx.requests.create(_new("globex", idempotency_key="k"), now=T0)
        assert created and other.id != first.id


async def test_requests_are_invisible_to_other_tenants(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    async with uow(sm) as tx:
        assert await tx.requests.get("globex", request_id) is None
        with pytest.raises(NotFound):
            await tx.requests.get_or_raise("globex", request_id)


async def test_auto_approved_requests_are_created_decided(sm, tenant):
    async with uow(sm) as tx:
        request, _ = await tx.requests.create(_new(tenant, status=Status.AUTO_APPROVED), now=T0)
    assert request.outcome is Status.AUTO_APPROVED and request.decided_at == T0


async def test_transition_is_compare_and_set(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    later = T0 + timedelta(minutes=5)
    async with uow(sm) as tx:

        async def escalate_from_version_0(stage: int) -> bool:
            return await tx.requests.transition(
                request_id,
                expected_status=Status.PENDING,
                expected_version=0,
                new_status=Status.PENDING,
                now=later,
                stage=stage,
            )

        # Escalate: still pending, next stage. The second caller read the same version and loses.
        assert await escalate_from_version_0(1)
        assert not await escalate_from_version_0(2)
        assert not await tx.requests.decide(request_id, expected_version=0, outcome=Status.APPROVED, now=later)
        assert await tx.requests.decide(
            request_id, expected_version=1, outcome=Status.APPROVED, status=Status.EXPIRED, now=later
        )
        request = await tx.requests.get_or_raise(tenant, request_id)
        assert (request.status, request.outcome, request.stage, request.version) == (
            Status.EXPIRED,
            Status.APPROVED,
            1,
            2,
        )
        assert request.updated_at == later
        with pytest.raises(TypeError):
            await tx.requests.transition(
                request_id,
                expected_status=Status.EXPIRED,
                expected_version=2,
                new_status=Status.EXPIRED,
                now=later,
                params={},
            )


async def test_duplicate_vote_leaves_the_transaction_usable(sm, tenant):
    request_id = await pending_request(sm, tenant, T0, approvals=2)
    async with uow(sm) as tx:
        await tx.votes.add_vote(request_id, "U1", Choice.APPROVE, stage=0, now=T0)
        with pytest.raises(DuplicateVote):
            await tx.votes.add_vote(request_id, "U1", Choice.REJECT, stage=0, now=T0, reason="changed mind")
        await tx.audit.append(tenant, "click.refused", now=T0, request_id=request_id, actor="U1")
    async with uow(sm) as tx:
        votes = await tx.votes.cast_votes(request_id)
        assert [(v.user, v.choice) for v in votes] == [("U1", Choice.APPROVE)]
        assert len(await tx.audit.for_request(tenant, request_id)) == 1


async def test_stage_deadlines_reminders_and_cards(sm, tenant):
    request_id = await pending_request(sm, tenant, T0)  # stage 0 due at T0+5m
    async with uow(sm) as tx:
        stage = (await tx.stages.stages(request_id))[0]
        stage.remind_at = T0 + timedelta(minutes=4)
        await tx.session.flush()
        await tx.cards.add_card(request_id, stage=0, channel="C1", ts="1700000000.000100", now=T0)
    async with uow(sm) as tx:
        assert await tx.stages.next_deadline() == T0 + timedelta(minutes=4)
        assert await tx.stages.due_stages(T0 + timedelta(minutes=4)) == []
        [reminder] = await tx.stages.due_reminders(T0 + timedelta(minutes=4))
        assert reminder.request_id == request_id and reminder.tenant == tenant
        assert await tx.stages.mark_reminded(request_id, 0, T0 + timedelta(minutes=4))
        assert not await tx.stages.mark_reminded(request_id, 0, T0 + timedelta(minutes=4))
        assert await tx.stages.next_deadline() == T0 + timedelta(minutes=5)
        [due] = await tx.stages.due_stages(T0 + timedelta(minutes=5))
        assert (due.request_id, due.index, due.deadline_at) == (request_id, 0, T0 + timedelta(minutes=5))
        assert await tx.stages.fire_stage(request_id, 0, T0 + timedelta(minutes=5))
        assert not await tx.stages.fire_stage(request_id, 0, T0 + timedelta(minutes=5))
        assert await tx.stages.due_stages(T0 + timedelta(hours=1)) == []
        assert await tx.stages.next_deadline() is None
        [card] = await tx.cards.cards(request_id)
        assert (card.channel, card.ts) == ("C1", "1700000000.000100")


async def test_pending_lists_and_workflow_depth(sm, tenant):
    await pending_request(sm, tenant, T0, request_id="r1")
    async with uow(sm) as tx:
        for i in range(3):
            await tx.requests.create(_new(tenant, id=f"w{i}", workflow_id="wf"), now=T0 + timedelta(seconds=i))
        assert [r.id for r in await tx.requests.list_pending(tenant)] == ["r1", "w0", "w1", "w2"]
        assert [r.id for r in await tx.requests.list_pending(tenant, pool="tier1")] == ["r1"]
        assert await tx.requests.count_pending(tenant, workflow_id="wf") == 3
        assert await tx.requests.list_pending("globex") == []
