"""store.receipts: which decisions are sealed (so a receipt can sign their seq), keys and their listing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store import uow
from store.audit import NewEvent, Sequencer
from store.receipts import NewReceipt
from tests.store.conftest import T0
from tests.store.helpers import pending_request


async def events(sm: async_sessionmaker[AsyncSession], *written: tuple[str, str, str]) -> None:
    async with uow(sm) as tx:
        await tx.audit.append_many([NewEvent(t, kind, T0, {}, request_id) for t, kind, request_id in written])


async def seal(engine: AsyncEngine) -> None:
    await Sequencer(engine, now=lambda: T0).seal_once()


async def seqs(sm: async_sessionmaker[AsyncSession], tenant: str, *ids: str) -> dict[str, int]:
    async with uow(sm, read_only=True) as tx:
        return await tx.receipts.decision_seqs(tenant, list(ids))


@pytest.mark.parametrize(
    ("sealed", "unsealed", "expected"),
    [
        ([], [], None),  # nothing written yet
        ([], ["request.created"], None),  # decided on arrival, not sealed yet
        (["request.created"], [], 1),  # decided on arrival, sealed
        (["request.created"], ["request.decided"], None),  # decided by votes, not sealed yet
        (["request.created", "vote.cast", "request.decided"], [], 3),
        (["request.created", "request.expired"], [], 2),
        (["request.created", "request.cancelled"], ["vote.cast"], 2),
        (["request.created", "request.escalated"], [], 1),  # escalation is no decision: created stands
    ],
)
async def test_a_decision_is_ready_once_its_event_is_sealed(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], tenant: str,
    sealed: list[str], unsealed: list[str], expected: int | None,
) -> None:  # fmt: skip
    await pending_request(sm, tenant, T0, request_id="r1")
    if sealed:
        await events(sm, *[(tenant, kind, "r1") for kind in sealed])
        await seal(engine)
    if unsealed:
        await events(sm, *[(tenant, kind, "r1") for kind in unsealed])
    assert (await seqs(sm, tenant, "r1")).get("r1") == expected
    assert await seqs(sm, "globex", "r1") == {}  # another tenant's chain never answers for it


async def test_keys_rotate_and_a_retired_key_is_listed_until_its_last_receipt_expires(
    sm: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await pending_request(sm, tenant, T0, request_id="r1")
    async with uow(sm) as tx:
        assert await tx.receipts.signing_key(tenant) is None
        await tx.receipts.add_key(tenant, kid="k1", private_key="p1", public_key="P1", now=T0)
        receipt = NewReceipt("r1", tenant, "k1", '{"v":1}', T0, T0 + timedelta(minutes=15))
        await tx.receipts.store([receipt])
        await tx.receipts.store([NewReceipt("r1", tenant, "k1", '{"v":2}', T0, T0)])  # the first one stands
        await tx.receipts.add_key(tenant, kid="k2", private_key="p2", public_key="P2", now=T0 + timedelta(minutes=1))
        await tx.receipts.add_key("globex", kid="g1", private_key="x", public_key="X", now=T0)
    async with uow(sm, read_only=True) as tx:
        assert await tx.receipts.issued(["r1", "r2"]) == {"r1": '{"v":1}'}
        signing = await tx.receipts.signing_key(tenant)
        assert signing is not None and signing.kid == "k2"
        listed = await tx.receipts.keys([tenant], now=T0 + timedelta(minutes=2))
        assert [(k.kid, k.retired_at is not None, k.valid_until) for k in listed] == [
            ("k1", True, T0 + timedelta(minutes=15)),
            ("k2", False, None),
        ]
        later = await tx.receipts.keys([tenant], now=T0 + timedelta(minutes=15))
        assert [k.kid for k in later] == ["k2"]
        everything = await tx.receipts.keys(None, now=T0 + timedelta(days=1), listed_only=False)
        assert sorted((k.tenant, k.kid) for k in everything) == [("acme", "k1"), ("acme", "k2"), ("globex", "g1")]
        trail = await tx.audit.recent(tenant)
    assert [e.kind for e in trail].count("tenant.receipt_key_created") == 2
