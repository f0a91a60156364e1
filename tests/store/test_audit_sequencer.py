"""Unsealed audit events and the sequencer: writers never wait on a chain head; the one sequencer seals
in batches; the trail shows what is not sealed yet; verify reports it; old chains go on after migration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from policy.sensitive import canonical_json
from store import GENESIS_HASH, create_engine, event_hash, export, format_at, make_sessionmaker, uow, upgrade, verify
from store.audit import Sequencer, unsealed_events, verify_anchored
from store.audit.sequencer import LEADER_LOCK
from store.models import AuditEvent, AuditHead, AuditUnsealed, Tenant

from .conftest import T0
from .helpers import pending_request


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _append(sm, tenant: str, kind: str, *, request_id: str | None = None, at=T0) -> None:
    async with uow(sm) as tx:
        await tx.audit.append(tenant, kind, now=at, request_id=request_id, payload={"kind": kind})


async def test_a_write_inserts_its_events_and_touches_no_chain_head(engine, sm, tenant):
    request_id = await pending_request(sm, tenant, T0)
    with statements(engine) as sent:
        async with uow(sm) as tx:
            request = await tx.requests.get_or_raise(tenant, request_id)
            await tx.audit.append_request_event(request, "request.created", now=T0, sensitive=())
            await tx.audit.append(tenant, "vote.cast", now=T0, request_id=request_id, actor="U1")
    audit = [s for s in sent if "audit" in s]
    assert len(audit) == 2 and all(s.lstrip().upper().startswith("INSERT INTO AUDIT_UNSEALED") for s in audit), audit
    assert not any("audit_head" in s or "audit_event" in s for s in sent)


async def test_the_sequencer_seals_in_insert_order_in_batches(engine, sm, tenant):
    for i in range(7):
        await _append(sm, "acme" if i % 3 else "globex", f"e{i}")
    sequencer = Sequencer(engine, now=lambda: T0, batch=2)
    assert await sequencer.seal_once() == 7
    assert await sequencer.seal_once() == 0
    assert [e.kind async for e in export(engine, "acme")] == ["e1", "e2", "e4", "e5"]
    assert [e.kind async for e in export(engine, "globex")] == ["e0", "e3", "e6"]
    for name, n in (("acme", 4), ("globex", 3)):
        result = await verify(engine, name)
        assert result.ok and result.events == n and result.unsealed == 0
    async with sm() as session:
        assert (await session.scalars(select(AuditUnsealed.id))).all() == []


async def test_the_trail_shows_unsealed_events_after_the_sealed_ones(engine, sm, tenant):
    await _append(sm, tenant, "request.created", request_id="r1")
    await _append(sm, tenant, "other", request_id="r2")
    await Sequencer(engine, now=lambda: T0).seal_once()
    await _append(sm, tenant, "vote.cast", request_id="r1")
    await _append(sm, tenant, "request.decided", request_id="r1")
    async with uow(sm, read_only=True) as tx:
        trail = await tx.audit.for_request(tenant, "r1")
        recent = await tx.audit.recent(tenant, limit=3)
    assert [(r.kind, r.seq, r.sealed) for r in trail] == [
        ("request.created", 1, True),
        ("vote.cast", None, False),
        ("request.decided", None, False),
    ]
    assert [r.kind for r in recent] == ["request.decided", "vote.cast", "other"]
    # Sealing changes nothing a reader sees but the seq and hash.
    await Sequencer(engine, now=lambda: T0).seal_once()
    async with uow(sm, read_only=True) as tx:
        sealed = await tx.audit.for_request(tenant, "r1")
    assert [(r.kind, r.seq) for r in sealed] == [("request.created", 1), ("vote.cast", 3), ("request.decided", 4)]
    assert [r.at for r in sealed] == [r.at for r in trail] and [r.payload for r in sealed] == [r.payload for r in trail]


async def test_verify_reports_unsealed_events_and_names_the_old_ones(engine, sm, tenant):
    await _fill_sealed(engine, sm, tenant, 2)
    await _append(sm, tenant, "old", request_id="r1", at=T0)
    await _append(sm, tenant, "recent", at=T0 + timedelta(minutes=10))
    result = await verify(engine, tenant)
    assert result.ok and result.events == 2
    assert (result.unsealed, result.oldest_unsealed) == (2, T0)
    count, named = await unsealed_events(engine, tenant, before=T0 + timedelta(minutes=5))
    assert count == 1 and [(e.kind, e.request_id, e.at) for e in named] == [("old", "r1", T0)]
    assert named[0].describe().startswith(f"unsealed event {named[0].id} (old, request r1) at 2025-01-31T09:30")
    assert (await unsealed_events(engine, "globex", before=T0 + timedelta(days=1)))[0] == 0


async def test_a_tampered_chain_is_set_aside_and_the_others_still_sealed(engine, sm, tenant):
    await _fill_sealed(engine, sm, tenant, 2)
    # A row inserted past acme's head takes the seq its next event needs.
    await _exec(engine, insert(AuditEvent).values(_event("acme", 3, "f" * 64)))
    await _append(sm, "acme", "stuck")
    await _append(sm, "globex", "fine")
    now = [T0]
    sequencer = Sequencer(engine, now=lambda: now[0], set_aside=timedelta(minutes=1))
    assert await sequencer.seal_once() == 1
    assert [e.kind async for e in export(engine, "globex")] == ["fine"]
    await _append(sm, "globex", "still fine")
    assert await sequencer.seal_once() == 1  # acme is left out meanwhile
    assert not (await verify(engine, "acme")).ok
    await _exec(engine, AuditEvent.__table__.delete().where((AuditEvent.tenant == "acme") & (AuditEvent.seq == 3)))
    assert await sequencer.seal_once() == 0  # still set aside
    now[0] += timedelta(minutes=2)
    assert await sequencer.seal_once() == 1
    result = await verify(engine, "acme")
    assert result.ok and result.events == 3 and result.unsealed == 0


async def test_a_payload_edited_before_sealing_is_sealed_as_found(engine, sm, tenant):
    await _append(sm, tenant, "a")
    await _append(sm, tenant, "b")
    await _exec(engine, update(AuditUnsealed).where(AuditUnsealed.kind == "a").values(payload="not json"))
    await _exec(engine, update(AuditUnsealed).where(AuditUnsealed.kind == "b").values(payload='{"z": 1, "a": 2}'))
    assert await Sequencer(engine, now=lambda: T0).seal_once() == 2
    assert [e.payload async for e in export(engine, tenant)] == ["not json", {"a": 2, "z": 1}]
    assert (await verify(engine, tenant)).ok


async def test_run_seals_promptly_and_stops(engine, sm, tenant):
    stop = asyncio.Event()
    task = asyncio.create_task(Sequencer(engine, now=lambda: T0, idle=0.01).run(stop))
    try:
        await _append(sm, tenant, "x")
        for _ in range(500):
            if (await verify(engine, tenant)).events == 1:
                break
            await asyncio.sleep(0.01)
        assert (await verify(engine, tenant)).events == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_one_sequencer_at_a_time_and_a_standby_takes_over(db_url, engine, sm, tenant):
    others = [create_engine(db_url) for _ in range(2)]
    stops = [asyncio.Event() for _ in others]
    runs = [
        asyncio.create_task(Sequencer(e, now=lambda: T0, idle=0.01, standby=0.05).run(s))
        for e, s in zip(others, stops, strict=True)
    ]
    try:
        await asyncio.gather(*(_append(sm, tenant, f"e{i}") for i in range(30)))
        await _until_sealed(engine, tenant, 30)
        if engine.dialect.name == "postgresql":
            assert not await _try_leader_lock(engine)  # one of the two holds it, the other stands by
        # Whichever it was, the first one stops: the other seals what comes next (taking over if need be).
        stops[0].set()
        await asyncio.wait_for(runs[0], timeout=5)
        await asyncio.gather(*(_append(sm, tenant, f"f{i}") for i in range(10)))
        await _until_sealed(engine, tenant, 40)
        if engine.dialect.name == "postgresql":
            assert not await _try_leader_lock(engine)
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*runs)
        for e in others:
            await e.dispose()
    result = await verify(engine, tenant)
    assert result.ok and result.unsealed == 0


async def test_an_existing_chain_goes_on_after_the_migration(db_url):
    """A database at 0002 whose writers chained events themselves: upgraded, its chain is sealed and
    verifies, anchors taken before still hold, and the sequencer links new events after its head."""
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "0002")
        prev = GENESIS_HASH
        rows = []
        for seq in range(1, 4):
            row = _event("acme", seq, prev)
            rows.append(row)
            prev = row["hash"]
        await _exec(engine, insert(Tenant).values(name="acme", created_at=T0, config_version=0))
        await _exec(engine, insert(AuditEvent), rows)
        await _exec(engine, insert(AuditHead).values(tenant="acme", seq=3, hash=prev))
        await upgrade(engine)
        assert (await verify(engine, "acme")).events == 3
        sm = make_sessionmaker(engine)
        await _append(sm, "acme", "after")
        assert await Sequencer(engine, now=lambda: T0).seal_once() == 1
        result = await verify_anchored(engine, "acme", {3: prev})
        assert result.ok and result.events == 4
        [fourth] = [e async for e in export(engine, "acme", since_seq=4)]
        assert (fourth.kind, fourth.prev_hash) == ("after", prev)
    finally:
        await engine.dispose()


def _event(tenant: str, seq: int, prev: str) -> dict[str, Any]:
    at = T0 + timedelta(seconds=seq)
    payload = {"seq": seq}
    digest = event_hash(
        prev, tenant=tenant, seq=seq, kind="old", request_id=None, actor="U1", at=format_at(at), payload=payload
    )
    return {
        "tenant": tenant, "seq": seq, "prev_hash": prev, "hash": digest, "kind": "old",
        "request_id": None, "actor": "U1", "at": at, "payload": canonical_json(payload),
    }  # fmt: skip


async def _fill_sealed(engine, sm, tenant: str, n: int) -> None:
    for i in range(n):
        await _append(sm, tenant, f"sealed{i}")
    await Sequencer(engine, now=lambda: T0).seal_once()


async def _exec(engine: AsyncEngine, statement: Any, params: Any = None) -> None:
    async with engine.begin() as conn:
        await conn.execute(statement, params)


async def _until_sealed(engine: AsyncEngine, tenant: str, n: int) -> None:
    for _ in range(1000):
        result = await verify(engine, tenant)
        if result.events == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tenant}: {result.events} events sealed, {result.unsealed} unsealed, expected {n} sealed")


async def _try_leader_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK})).scalar())
        if got:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
        return got
