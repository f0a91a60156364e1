"""The audit chain: its exact format, tamper detection, redaction, export; unsealed events and the sequencer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from policy.models import NAME as MANIFEST_NAME
from policy.sensitive import canonical_json, digest
from store import GENESIS_HASH, AuditLog, InvalidName, TenantUnknown, check_name, event_hash, export, uow, verify
from store.audit import SYSTEM_CHAIN, Sequencer, append_system, verify_anchored
from store.engine import create_engine, make_sessionmaker
from store.models import AuditEvent, AuditHead

from .conftest import T0
from .helpers import pending_request


async def seal(sm_or_engine) -> int:
    """Seal what is waiting, as the service's sequencer does within its interval."""
    engine = sm_or_engine.kw["bind"] if isinstance(sm_or_engine, async_sessionmaker) else sm_or_engine
    return await Sequencer(engine, now=lambda: T0).seal_once()


async def _fill(sm, tenant: str, n: int) -> None:
    async with uow(sm) as tx:
        for i in range(n):
            await tx.audit.append(tenant, "test.event", now=T0 + timedelta(seconds=i), payload={"i": i}, actor=f"U{i}")
    await seal(sm)


async def _execute(sm, stmt) -> None:
    async with sm() as session, session.begin():
        await session.execute(stmt)


def _row(tenant: str, seq: int) -> object:
    return (AuditEvent.tenant == tenant) & (AuditEvent.seq == seq)


async def _insert_forged(sm, tenant: str, seq: int, prev: str, at: datetime) -> None:
    """Insert a ``forged`` event at ``seq`` linked to ``prev``, hashed as if made at 09:30:04."""
    forged = event_hash(
        prev, tenant=tenant, seq=seq, kind="forged", request_id=None, actor=None,
        at="2025-01-31T09:30:04.000000Z", payload={},
    )  # fmt: skip
    row = insert(AuditEvent).values(
        tenant=tenant, seq=seq, prev_hash=prev, hash=forged, kind="forged",
        request_id=None, actor=None, at=at, payload="{}",
    )  # fmt: skip
    await _execute(sm, row)


async def test_hash_is_sha256_of_prev_hash_and_canonical_event(engine, sm, tenant):
    async with uow(sm) as tx:
        appended = await tx.audit.append(tenant, "request.created", now=T0, payload={"b": 1, "a": "é"}, request_id="r1")
        await tx.audit.append(tenant, "vote.cast", now=T0, actor="U1")
    assert (appended.seq, appended.hash, appended.sealed) == (None, None, False)  # linked by the sequencer
    assert await seal(engine) == 2
    first, second = [e async for e in export(engine, tenant)]
    event = {
        "tenant": tenant,
        "seq": 1,
        "kind": "request.created",
        "request_id": "r1",
        "actor": None,
        "at": "2025-01-31T09:30:00.000000Z",
        "payload": {"a": "é", "b": 1},
    }
    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert first.hash == hashlib.sha256((GENESIS_HASH + canonical_json(event)).encode()).hexdigest()
    assert second.prev_hash == first.hash and second.seq == 2
    async with uow(sm) as tx:
        assert await tx.audit.head(tenant) == (2, second.hash)
    assert (first.seq, first.payload, first.request_id) == (1, {"a": "é", "b": 1}, "r1")


async def test_append_for_unknown_tenant_raises(sm, tenant):
    with pytest.raises(TenantUnknown):
        async with uow(sm) as tx:
            await tx.audit.append("nobody", "x", now=T0)


def test_audit_log_has_no_way_to_change_history():
    public = {name for name in dir(AuditLog) if not name.startswith("_")}
    assert public == {"append", "append_many", "append_request_event", "head", "for_request", "recent"}


async def test_intact_chain_verifies(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    result = await verify(engine, tenant)
    assert result.ok and result.events == 10
    assert result.describe() == f"ok: 10 events, head {result.head_hash[:12]}"
    empty = await verify(engine, "globex")
    assert empty.ok and empty.events == 0


@pytest.mark.parametrize(
    "field,value",
    [("payload", '{"i":99}'), ("kind", "other"), ("actor", "U9"), ("request_id", "r9"), ("at", T0 + timedelta(days=1))],
)
async def test_editing_any_field_is_named(engine, sm, tenant, field, value):
    await _fill(sm, tenant, 10)
    await _execute(sm, update(AuditEvent).where(_row(tenant, 4)).values({field: value}))
    result = await verify(engine, tenant)
    assert not result.ok and result.broken_seq == 4
    assert result.describe() == "broken at seq 4: hash mismatch (row edited or moved)"


async def test_edit_with_recomputed_hash_breaks_the_next_link(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    async with sm() as session:
        row = (await session.scalars(select(AuditEvent).where(_row(tenant, 4)))).one()
    forged = event_hash(
        row.prev_hash,
        tenant=tenant,
        seq=4,
        kind="forged",
        request_id=None,
        actor="U3",
        at="2025-01-31T09:30:03.000000Z",
        payload={"i": 3},
    )
    await _execute(sm, update(AuditEvent).where(_row(tenant, 4)).values(kind="forged", hash=forged))
    result = await verify(engine, tenant)
    assert result.broken_seq == 5
    assert "prev_hash does not match seq 4" in result.describe()


async def test_deleting_a_row_is_named(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    await _execute(sm, delete(AuditEvent).where(_row(tenant, 6)))
    result = await verify(engine, tenant)
    assert result.broken_seq == 6
    assert result.describe() == "gap: seq 6 missing (row deleted)"


async def test_deleting_the_last_row_is_named(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    await _execute(sm, delete(AuditEvent).where(_row(tenant, 10)))
    result = await verify(engine, tenant)
    assert result.broken_seq == 10
    assert "seq 10-10 missing" in result.describe()


async def test_reordering_rows_is_named(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    # Swap events 3 and 7 by renumbering through a free seq.
    await _execute(sm, update(AuditEvent).where(_row(tenant, 3)).values(seq=1000))
    await _execute(sm, update(AuditEvent).where(_row(tenant, 7)).values(seq=3))
    await _execute(sm, update(AuditEvent).where(_row(tenant, 1000)).values(seq=7))
    result = await verify(engine, tenant)
    assert result.broken_seq == 3
    assert "hash mismatch" in result.describe()


async def test_inserted_row_in_the_middle_is_named(engine, sm, tenant):
    await _fill(sm, tenant, 10)
    # Make room at seq 5 (shift 5..10 up by one, highest first), then insert a forged event.
    for seq in range(10, 4, -1):
        await _execute(sm, update(AuditEvent).where(_row(tenant, seq)).values(seq=seq + 1))
    async with sm() as session:
        prev = (await session.scalars(select(AuditEvent.hash).where(_row(tenant, 4)))).one()
    await _insert_forged(sm, tenant, 5, prev, T0 + timedelta(seconds=4))
    result = await verify(engine, tenant)
    assert result.broken_seq == 6  # the valid-looking forgery breaks its successor's link
    assert not result.ok


async def test_inserted_row_after_the_head_is_named(engine, sm, tenant):
    await _fill(sm, tenant, 3)
    async with uow(sm) as tx:
        _, last = await tx.audit.head(tenant)
    await _insert_forged(sm, tenant, 4, last, T0)
    result = await verify(engine, tenant)
    assert result.broken_seq == 4
    assert "event past the recorded head 3 (row inserted)" in result.describe()


async def test_verify_is_per_tenant(engine, sm, tenant):
    await _fill(sm, "acme", 5)
    await _fill(sm, "globex", 5)
    await _execute(sm, update(AuditEvent).where(_row("globex", 2)).values(payload="{}"))
    assert (await verify(engine, "acme")).ok
    assert (await verify(engine, "globex")).broken_seq == 2


async def test_request_events_never_hold_sensitive_values(sm, tenant):
    params = {"amount": 620, "card_number": "4111111111111111", "customer": {"email": "a@b.c", "name": "Ana"}}
    request_id = await pending_request(sm, tenant, T0, params=params, sensitive=("card_number", "customer.email"))
    async with uow(sm) as tx:
        request = await tx.requests.get_or_raise(tenant, request_id)
        event = await tx.audit.append_request_event(request, "request.created", now=T0, sensitive=request.sensitive)
        # The full params stay readable for the agent's own reads.
        assert request.params["card_number"] == "4111111111111111"
    assert event.payload["params"]["card_number"] == digest("4111111111111111")
    assert event.payload["params"]["customer"] == {"email": digest("a@b.c"), "name": "Ana"}
    async with sm() as session:
        stored = (await session.scalars(select(AuditEvent.payload).where(AuditEvent.tenant == tenant))).all()
    assert not any("4111111111111111" in text or "a@b.c" in text for text in stored)


async def test_export_streams_one_tenant_in_order_with_since(engine, sm, tenant):
    await _fill(sm, "acme", 7)
    await _fill(sm, "globex", 3)
    events = [e async for e in export(engine, "acme", batch=2)]
    assert [e.seq for e in events] == list(range(1, 8))
    assert {e.tenant for e in events} == {"acme"}
    assert [e.seq async for e in export(engine, "acme", since_seq=5)] == [5, 6, 7]
    assert [e.seq async for e in export(engine, "acme", since_at=T0 + timedelta(seconds=5))] == [6, 7]
    line = json.loads(json.dumps(events[0].as_dict()))
    assert line["at"] == "2025-01-31T09:30:00.000000Z" and line["payload"] == {"i": 0}


async def test_head_row_cannot_hide_a_rewrite_of_everything(engine, sm, tenant):
    await _fill(sm, tenant, 3)
    await _execute(sm, update(AuditHead).where(AuditHead.tenant == tenant).values(hash="f" * 64))
    result = await verify(engine, tenant)
    assert not result.ok and "recorded head" in result.describe()


async def test_verify_fast_path_agrees_with_the_definition(engine, sm, tenant):
    async with uow(sm) as tx:
        await tx.audit.append(
            tenant, "kind.ü", now=T0, actor='U"1', payload={"z": [1.5, None, "日本"], "a": {"b": True}}
        )
        await tx.audit.append(tenant, "x", now=T0 + timedelta(microseconds=7), request_id="r\n1", payload={})
    await seal(engine)
    assert (await verify(engine, tenant)).ok
    # The same meaning stored in another JSON spelling still verifies (the definition decides)...
    await _execute(
        sm, update(AuditEvent).where(_row(tenant, 1)).values(payload='{"a": {"b": true}, "z": [1.5, null, "日本"]}')
    )
    assert (await verify(engine, tenant)).ok
    # ...a different meaning does not.
    await _execute(
        sm, update(AuditEvent).where(_row(tenant, 1)).values(payload='{"a": {"b": false}, "z": [1.5, null, "日本"]}')
    )
    assert (await verify(engine, tenant)).broken_seq == 1
    await _execute(sm, update(AuditEvent).where(_row(tenant, 1)).values(payload="not json"))
    assert (await verify(engine, tenant)).broken_seq == 1


async def test_read_only_unit_of_work_does_not_block_writers(sm, tenant):
    async with uow(sm, read_only=True) as reader:
        assert await reader.audit.head(tenant) == (0, GENESIS_HASH)
        async with uow(sm) as writer:
            await writer.audit.append(tenant, "x", now=T0)
    await seal(sm)
    async with uow(sm) as tx:
        assert (await tx.audit.head(tenant))[0] == 1


async def test_the_system_chain_is_a_name_no_tenant_can_have(sm):
    assert re.fullmatch(MANIFEST_NAME, SYSTEM_CHAIN) is None
    with pytest.raises(InvalidName):
        check_name(SYSTEM_CHAIN)
    with pytest.raises(InvalidName):
        async with uow(sm) as tx:
            await tx.tenants.ensure(SYSTEM_CHAIN, now=T0)


async def test_the_system_chain_is_made_with_its_first_event(engine, sm, tenant):
    async with uow(sm, read_only=True) as tx:
        assert await tx.tenants.get(SYSTEM_CHAIN) is None
    assert (await verify(engine, SYSTEM_CHAIN)).events == 0

    async def refused(i: int) -> None:
        async with uow(sm) as tx:
            await append_system(tx.session, "slack.refused", now=T0, payload={"reason": "x", "count": i})

    # Concurrent first appends meet at the tenant row; the sequencer makes one chain of them, no gap.
    await asyncio.gather(*(refused(i) for i in range(5)))
    await seal(engine)
    assert [e.seq async for e in export(engine, SYSTEM_CHAIN)] == [1, 2, 3, 4, 5]
    await refused(5)
    await seal(engine)
    result = await verify(engine, SYSTEM_CHAIN)
    assert result.ok and result.events == 6
    async with uow(sm, read_only=True) as tx:
        assert await tx.tenants.names() == ["acme", "globex"]  # the chain's row is no tenant
    assert [e.tenant async for e in export(engine, SYSTEM_CHAIN)] == [SYSTEM_CHAIN] * 6
    assert (await verify(engine, tenant)).events == 0  # tenants' chains untouched


async def test_anchors_hold_while_the_chain_grows(engine, sm, tenant):
    await _fill(sm, tenant, 5)
    head = await verify(engine, tenant)
    anchors = {5: head.head_hash, 0: GENESIS_HASH}
    await _fill(sm, tenant, 3)
    result = await verify_anchored(engine, tenant, anchors)
    assert result.ok and result.events == 8
    assert (await verify_anchored(engine, tenant, {5: head.head_hash[:12].upper()})).ok  # a prefix, any case


async def test_an_anchor_catches_a_cut_tail_with_a_rewritten_head(engine, sm, tenant):
    await _fill(sm, tenant, 5)
    async with uow(sm, read_only=True) as tx:
        fifth, fourth = await tx.audit.recent(tenant, limit=2)
    await _execute(sm, delete(AuditEvent).where(_row(tenant, 5)))
    await _execute(sm, update(AuditHead).where(AuditHead.tenant == tenant).values(seq=4, hash=fourth.hash))
    assert (await verify(engine, tenant)).ok  # the limit of a chain checked from inside
    result = await verify_anchored(engine, tenant, {5: fifth.hash})
    assert (result.ok, result.broken_seq) == (False, 5)
    assert result.describe() == "anchor seq 5 missing: the chain ends at seq 4 (tail cut)"
    assert (await verify_anchored(engine, tenant, {4: fourth.hash})).ok


async def test_an_anchor_catches_a_rewrite_with_recomputed_hashes(engine, sm, tenant):
    await _fill(sm, tenant, 3)
    head = await verify(engine, tenant)
    async with uow(sm, read_only=True) as tx:
        third = (await tx.audit.recent(tenant, limit=1))[0]
    payload = {"i": 99}
    forged = event_hash(
        third.prev_hash, tenant=tenant, seq=3, kind=third.kind, request_id=None, actor=third.actor,
        at="2025-01-31T09:30:02.000000Z", payload=payload,
    )  # fmt: skip
    await _execute(sm, update(AuditEvent).where(_row(tenant, 3)).values(payload=canonical_json(payload), hash=forged))
    await _execute(sm, update(AuditHead).where(AuditHead.tenant == tenant).values(hash=forged))
    assert (await verify(engine, tenant)).ok
    result = await verify_anchored(engine, tenant, {3: head.head_hash})
    assert result.broken_seq == 3 and "(history rewritten)" in result.describe()


async def test_an_anchor_must_be_a_seq_and_enough_of_a_hash(engine, tenant):
    for bad in ({1: "abc"}, {1: "z" * 64}, {-1: "0" * 64}, {1: ""}):
        with pytest.raises(ValueError):
            await verify_anchored(engine, tenant, bad)


async def test_appends_from_two_processes_and_a_rollback_keep_one_gapless_chain(db_url, engine, sm, tenant):
    # Two "processes" append and each runs a sequencer, sealing at the same time as the other: still one
    # chain, no gap, no fork, and nothing of the rolled-back unit of work in it.
    other = create_engine(db_url)
    other_sm = make_sessionmaker(other)
    try:
        for n in range(3):
            async with uow(sm) as tx:
                await tx.audit.append(tenant, "mine", now=T0, payload={"n": n})
            async with uow(other_sm) as tx:
                await tx.audit.append(tenant, "theirs", now=T0, payload={"n": n})
        with pytest.raises(RuntimeError):
            async with uow(sm) as tx:
                await tx.audit.append(tenant, "rolled back", now=T0)
                raise RuntimeError("the unit of work fails after the append")
        async with uow(sm) as tx:
            await tx.audit.append(tenant, "after the rollback", now=T0)
        async with asyncio.TaskGroup() as group:  # concurrent appends from one process, sealed as they come
            for n in range(10):
                group.create_task(_append(sm, tenant, n))
            group.create_task(seal(engine))
            group.create_task(seal(other))
        await asyncio.gather(seal(engine), seal(other))
    finally:
        await other.dispose()
    result = await verify(engine, tenant)
    assert result.ok and result.events == 17 and result.unsealed == 0
    async with uow(sm, read_only=True) as tx:
        kinds = [r.kind for r in reversed(await tx.audit.recent(tenant, limit=20))]
    assert kinds[:7] == ["mine", "theirs"] * 3 + ["after the rollback"] and "rolled back" not in kinds


async def _append(sm, tenant: str, n: int) -> None:
    async with uow(sm) as tx:
        await tx.audit.append(tenant, "concurrent", now=T0, payload={"n": n})
