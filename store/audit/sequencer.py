"""The sequencer: seals unsealed audit events into their tenants' chains, in batches.

Writers insert events unsealed (:mod:`store.audit.log`). The sequencer takes what has
committed, in insert order, gives each event the next ``seq`` of its tenant's chain and its
link hash (:mod:`store.audit.chain`), writes them to ``audit_event``, moves each head once and
deletes the unsealed rows, all in one transaction per batch. The chain order is the seal
order: on PostgreSQL ids can commit out of order, and an event whose id committed late is
sealed in a later batch, after events with higher ids. The trail reads show sealed events in
chain order and unsealed ones after them in id order, so such a late event moves behind the
others of its request when it is sealed (events whose transactions follow one another, like a
request's creation and its decision, are never reordered).

Exactly one sequencer runs at a time across replicas: on PostgreSQL the running one holds a
session advisory lock (:data:`LEADER_LOCK`, :mod:`store.leader`) on a connection of its own, and
the others wait as standbys; on SQLite every process may run one, since the write lock serializes
them. Either way each seal transaction also takes :data:`SEAL_LOCK` (PostgreSQL) or ``BEGIN IMMEDIATE``
(SQLite), so a second sealer (``countersign audit seal``, a replica that lost its connection
and has not noticed) waits instead of forking a chain.

A tenant whose batch cannot be sealed (its chain tampered with so the next seq is taken) is set
aside for a while and logged; the others go on being sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, delete, func, insert, select, text, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from policy.sensitive import canonical_json
from store._sql import table_of
from store.audit.chain import GENESIS_HASH, event_hash, format_at, sqlite_at
from store.engine import SQLITE_BEGIN, write_lock
from store.leader import Alive, leadership
from store.leader import wait as _wait
from store.models import AuditEvent, AuditHead, AuditUnsealed

log = logging.getLogger(__name__)

# Arbitrary constants ("ctsgseq"/"ctsgsea" in ASCII), distinct from the migration lock's.
LEADER_LOCK = 0x63747367736571
SEAL_LOCK = 0x63747367736561

# What a tampered row makes sealing raise (a seq already taken, a time that is no time). Anything
# else (the database gone) fails the whole pass, which is retried; it sets no tenant aside.
_BAD_DATA = (IntegrityError, ValueError, TypeError)

_UNSEALED = table_of(AuditUnsealed)
_EVENTS = table_of(AuditEvent)
_HEADS = table_of(AuditHead)


class Sequencer:
    """Seals unsealed audit events into the chain; ``run`` loops, ``seal_once`` seals what is there."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        now: Callable[[], datetime],
        batch: int = 2000,
        idle: float = 0.05,
        standby: float = 1.0,
        set_aside: timedelta = timedelta(minutes=1),
    ) -> None:
        """
        Args:
            engine: the database.
            now: the clock (when a set-aside tenant is tried again).
            batch: events sealed per transaction at most.
            idle: passes start every ``idle`` seconds, or back to back while a pass takes longer.
                The seal interval, the window in which a committed event is not yet in the chain,
                is about this plus a pass.
            standby: seconds between attempts to become the sequencer, and between checks that
                the leader's connection is still alive (PostgreSQL).
            set_aside: how long a tenant whose batch failed is left out before being retried.
        """
        self.engine = engine
        self.now = now
        self.batch = batch
        self.idle = idle
        self.standby = standby
        self.set_aside = set_aside
        self._aside: dict[str, datetime] = {}

    async def seal_once(self) -> int:
        """Seal every event committed before the call, in transactions of at most ``batch`` events.

        Returns:
            How many events were sealed.
        """
        upto = await self._last_unsealed_id()
        if upto is None:
            return 0
        total = 0
        while True:
            sealed, seen = await self._seal_batch(upto)
            total += sealed
            if seen < self.batch:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Seal until ``stop`` is set: as the one sequencer, or as a standby until it can be."""
        while not stop.is_set():
            try:
                async with leadership(
                    self.engine,
                    LEADER_LOCK,
                    stop,
                    standby=self.standby,
                    role="audit sequencer: this process seals the audit log",
                ) as alive:
                    if alive is not None:
                        await self._lead(stop, alive)
            except Exception:
                log.exception("audit sequencer failed; retrying")
                await _wait(stop, self.standby)

    async def _lead(self, stop: asyncio.Event, alive: Alive) -> None:
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not stop.is_set():
            started = loop.time()
            try:
                sealed = await self.seal_once()
            except Exception:
                log.exception("audit seal pass failed")
                sealed = 0
                await _wait(stop, self.standby)
            # Passes start every ``idle`` seconds, or back to back while each takes longer (or fills a
            # batch): a pass that waited for SQLite's write lock behind a burst does not wait again.
            if sealed < self.batch:
                await _wait(stop, self.idle - (loop.time() - started))
            if loop.time() - checked >= self.standby:
                await alive()  # raises when the leader's connection (and so its lock) is gone
                checked = loop.time()

    async def _last_unsealed_id(self) -> int | None:
        async with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One round trip, no BEGIN/COMMIT: this runs every idle wait.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                last = (await conn.execute(select(func.max(AuditUnsealed.id)))).scalar()
            else:
                await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
                async with conn.begin():
                    last = (await conn.execute(select(func.max(AuditUnsealed.id)))).scalar()
        return None if last is None else int(last)

    async def _seal_batch(self, upto: int) -> tuple[int, int]:
        """Seal up to ``batch`` events with ids up to ``upto``; returns (sealed, read)."""
        now = self.now()
        self._aside = {t: until for t, until in self._aside.items() if until > now}
        taken: list[Any] = []
        try:
            async with self._sealing() as conn:
                taken = await self._take(conn, AuditUnsealed.id <= upto, limit=self.batch)
                await _seal(conn, taken)
            return len(taken), len(taken)
        except _BAD_DATA:
            if not taken:
                raise
            log.warning("audit seal of a batch failed; sealing it tenant by tenant", exc_info=True)
        # Rolled back whole: each tenant's part again, in a transaction of its own.
        parts: dict[str, list[int]] = {}
        for row in taken:
            parts.setdefault(row.tenant, []).append(int(row.id))
        sealed = 0
        for tenant, ids in parts.items():
            try:
                async with self._sealing() as conn:
                    sealed += len(await _seal(conn, await self._take(conn, AuditUnsealed.id.in_(ids))))
            except _BAD_DATA:
                self._aside[tenant] = now + self.set_aside
                log.exception(
                    "audit events of %s cannot be sealed (its chain may have been tampered with); set aside for %s",
                    tenant,
                    self.set_aside,
                )
        return sealed, len(taken)

    @contextlib.asynccontextmanager
    async def _sealing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction no other seal runs beside (SQLite's write lock; a transaction lock on PostgreSQL)."""
        lock = write_lock(self.engine)
        async with contextlib.AsyncExitStack() as stack:
            if lock is not None:
                await stack.enter_async_context(lock)
            conn = await stack.enter_async_context(self.engine.begin())
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEAL_LOCK})
            yield conn

    async def _take(self, conn: AsyncConnection, which: Any, *, limit: int | None = None) -> list[Any]:
        """Delete the chosen unsealed rows (oldest first, set-aside tenants left out) and return them by id.

        One statement reads and removes them; the transaction puts them in ``audit_event`` or rolls back.
        """
        chosen = select(AuditUnsealed.id).where(which).order_by(AuditUnsealed.id)
        if self._aside:
            chosen = chosen.where(AuditUnsealed.tenant.not_in(list(self._aside)))
        if limit is not None:
            chosen = chosen.limit(limit)
        # SQLite keeps times as text: read it as such, so one malformed row fails its own tenant's
        # seal (in _seal) rather than the read of the whole batch.
        at = type_coerce(_UNSEALED.c.at, String) if conn.dialect.name == "sqlite" else _UNSEALED.c.at
        taken = (
            delete(_UNSEALED)
            .where(_UNSEALED.c.id.in_(chosen.scalar_subquery()))
            .returning(
                _UNSEALED.c.id,
                _UNSEALED.c.tenant,
                _UNSEALED.c.kind,
                _UNSEALED.c.request_id,
                _UNSEALED.c.actor,
                at.label("at"),
                _UNSEALED.c.payload,
            )
        )
        return sorted((await conn.execute(taken)).all(), key=lambda row: int(row.id))


async def _seal(conn: AsyncConnection, rows: list[Any]) -> list[Any]:
    """Link each tenant's events (``rows``, taken in id order) after its head, write them, move the heads."""
    if not rows:
        return rows
    by_tenant: dict[str, list[Any]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant, []).append(row)
    heads = {
        str(tenant): (int(seq), str(digest))
        for tenant, seq, digest in await conn.execute(
            select(AuditHead.tenant, AuditHead.seq, AuditHead.hash).where(AuditHead.tenant.in_(list(by_tenant)))
        )
    }
    events: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for tenant, rows in by_tenant.items():
        seq, prev = heads.get(tenant, (0, GENESIS_HASH))
        for row in rows:
            seq += 1
            at_text, at = _at(row.at)
            payload_text, payload = _canonical(tenant, row.id, row.payload)
            digest = event_hash(
                prev,
                tenant=tenant,
                seq=seq,
                kind=row.kind,
                request_id=row.request_id,
                actor=row.actor,
                at=at_text,
                payload=payload,
            )
            events.append(
                {
                    "tenant": tenant,
                    "seq": seq,
                    "prev_hash": prev,
                    "hash": digest,
                    "kind": row.kind,
                    "request_id": row.request_id,
                    "actor": row.actor,
                    "at": at,
                    "payload": payload_text,
                }
            )
            prev = digest
        moved.append({"tenant": tenant, "seq": seq, "hash": prev})
    # A seq already taken (rows inserted past the head) fails here, at the primary key.
    await conn.execute(insert(_EVENTS), events)
    upsert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_HEADS)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["tenant"], set_={"seq": upsert.excluded.seq, "hash": upsert.excluded.hash}
        ),
        moved,
    )
    return rows


def _at(value: datetime | str) -> tuple[str, datetime]:
    """The hashed spelling of an event time, and the time to store."""
    if isinstance(value, str):
        spelled = sqlite_at(value)
        return spelled, datetime.fromisoformat(spelled.replace("Z", "+00:00"))
    return format_at(value), value


def _canonical(tenant: str, row_id: int, text_: str) -> tuple[str, Any]:
    """The payload's canonical JSON text and value. The writer stored it canonical; whatever
    else is found (edited before sealing) is sealed as found, as a JSON string, and logged."""
    try:
        value = json.loads(text_)
    except ValueError:
        log.error("unsealed audit event %s of %s has a payload that is not JSON; sealed as a string", row_id, tenant)
        value = text_
    return canonical_json(value), value
