"""Checking a chain: every sealed link, the head, anchors kept outside, and what is not sealed yet.

The head row lives in the same database as the chain, so someone who can write both can cut
the tail and rewrite the head to match; :func:`verify_anchored` catches that against a link
(seq and hash) recorded outside the database by an earlier verify.

Unsealed events are not in the chain yet: nothing proves they were not edited or removed
before the sequencer sealed them. Verify counts them and reports the oldest; an event left
unsealed much longer than the seal interval means the sequencer is stopped or something keeps
it from sealing (:func:`unsealed_events` names them).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.audit.chain import ANCHOR_HASH, GENESIS_HASH, format_at, json_str, row_hash, spliced_event, sqlite_at
from store.engine import SQLITE_BEGIN
from store.models import AuditEvent, AuditHead, AuditUnsealed


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``broken_seq`` is the first link that fails, or None.

    ``unsealed`` events of the tenant were committed but not yet sealed when the chain was read
    (the oldest at ``oldest_unsealed``); they are not part of ``events``.
    """

    tenant: str
    events: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None
    unsealed: int = 0
    oldest_unsealed: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None

    def describe(self) -> str:
        """One line for people: ``ok: 12 events, head 1a2b3c4d5e6f`` or what broke where."""
        if self.ok:
            return f"ok: {self.events} events, head {self.head_hash[:12]}"
        return f"{self.problem}"


@dataclass(frozen=True)
class UnsealedEvent:
    """An event committed and not yet sealed. ``id`` is its insert order, not a seq."""

    id: int
    tenant: str
    kind: str
    request_id: str | None
    actor: str | None
    at: datetime

    def describe(self) -> str:
        about = f", request {self.request_id}" if self.request_id else ""
        return f"unsealed event {self.id} ({self.kind}{about}) at {self.at.isoformat()}"


async def verify(engine: AsyncEngine, tenant: str, *, batch: int = 5000) -> VerifyResult:
    """Walk the tenant's sealed chain from the first event and report the first broken link.

    Reads in batches through a streaming cursor, so memory stays flat for any chain length, in
    one snapshot (REPEATABLE READ on PostgreSQL), so events sealed during the walk are not seen
    half-way: past the head read at the start, they would look inserted.

    Args:
        engine: the database.
        tenant: whose chain.
        batch: rows fetched per round trip.

    Returns:
        ``VerifyResult``; ``ok`` is False when an event was edited (hash mismatch), removed
        (gap in ``seq``), moved (hash mismatch at the new place), inserted (gap, hash or link
        mismatch, or an event past the recorded head), or the tail was cut (head mismatch).
        It also counts the tenant's unsealed events.
    """
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    async with snapshot(engine) as conn:
        unsealed, oldest = (
            await conn.execute(select(func.count(), func.min(AuditUnsealed.at)).where(AuditUnsealed.tenant == tenant))
        ).one()
        unsealed = int(unsealed)

        def broken(seq: int, problem: str) -> VerifyResult:
            return VerifyResult(tenant, count, "", seq, problem, unsealed, oldest)

        head_row = (await conn.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.tenant == tenant))).first()
        head_seq, head_hash = (head_row.seq, head_row.hash) if head_row else (0, GENESIS_HASH)
        # SQLite keeps times as text in one fixed format: hashing can use it as is,
        # which spares a datetime parse and format per row (a third of verify's time).
        at_column: Any = type_coerce(AuditEvent.at, String) if conn.dialect.name == "sqlite" else AuditEvent.at
        query = (
            select(
                AuditEvent.seq,
                AuditEvent.prev_hash,
                AuditEvent.hash,
                AuditEvent.kind,
                AuditEvent.request_id,
                AuditEvent.actor,
                at_column,
                AuditEvent.payload,
            )
            .where(AuditEvent.tenant == tenant)
            .order_by(AuditEvent.seq)
        )
        sha256 = hashlib.sha256
        tenant_json = json_str(tenant)
        spell: Callable[[Any], str] = sqlite_at if conn.dialect.name == "sqlite" else format_at
        stream = await conn.stream(query.execution_options(yield_per=batch))
        async for part in stream.partitions():
            for seq, prev_hash, stored_hash, kind, request_id, actor, at, payload in part:
                if seq > head_seq:
                    return broken(seq, f"broken at seq {seq}: event past the recorded head {head_seq} (row inserted)")
                if seq != expected_seq:
                    missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
                    return broken(expected_seq, f"gap: seq {missing} missing (row deleted)")
                # The row's own content first (edited or moved), then its link to the previous row. The
                # payload is spliced in as stored (one sha256 per row); the definition decides a mismatch.
                text = spliced_event(tenant_json, seq, kind, request_id, actor, spell(at), payload)
                if sha256((prev_hash + text).encode()).hexdigest() != stored_hash and (
                    row_hash(tenant, seq, prev_hash, kind, request_id, actor, at, payload) != stored_hash
                ):
                    return broken(seq, f"broken at seq {seq}: hash mismatch (row edited or moved)")
                if prev_hash != prev:
                    return broken(seq, f"broken at seq {seq}: prev_hash does not match seq {seq - 1} (chain relinked)")
                prev = stored_hash
                expected_seq += 1
                count += 1
    if count != head_seq:
        return broken(count + 1, f"gap: seq {count + 1}-{head_seq} missing (tail deleted)")
    if prev != head_hash:
        return broken(count, f"broken at seq {count}: does not match the recorded head (row replaced)")
    return VerifyResult(tenant, count, prev, unsealed=unsealed, oldest_unsealed=oldest)


async def verify_anchored(
    engine: AsyncEngine, tenant: str, anchors: Mapping[int, str], *, batch: int = 5000
) -> VerifyResult:
    """:func:`verify`, then check that the chain still holds each anchor.

    An anchor is a link an earlier verify printed (``seq`` and the event's hash), kept outside
    the database. A verified chain that still has that hash at that seq holds every event up
    to it unchanged (each hash covers the one before); one that ends below the seq was cut,
    and any other hash there means history was rewritten, however consistent the rewrite.

    Args:
        engine: the database.
        tenant: whose chain.
        anchors: ``{seq: hash}``; a hash may be shortened to a prefix (older verify output
            printed 12 hex digits), which is only as strong as its length.
        batch: rows fetched per round trip by the walk.

    Returns:
        ``VerifyResult``: the walk's, or the first anchor (lowest seq) that does not hold.

    Raises:
        ValueError: a negative seq, or a hash that is not 12 to 64 hex digits.
    """
    for seq, anchored in anchors.items():
        if seq < 0 or not ANCHOR_HASH.fullmatch(anchored):
            raise ValueError(f"anchor {seq}:{anchored}: need a seq >= 0 and 12 to 64 hex digits of its hash")
    result = await verify(engine, tenant, batch=batch)
    if not result.ok or not anchors:
        return result
    async with snapshot(engine) as conn:
        rows = await conn.execute(
            select(AuditEvent.seq, AuditEvent.hash).where(
                AuditEvent.tenant == tenant, AuditEvent.seq.in_([s for s in anchors if s > 0])
            )
        )
        stored = {int(seq): str(digest) for seq, digest in rows}
    stored[0] = GENESIS_HASH

    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(tenant, result.events, "", seq, problem, result.unsealed, result.oldest_unsealed)

    for seq, anchored in sorted(anchors.items()):
        # Only the walked part counts: a row past it (sealed since the walk) was not verified.
        if seq > result.events or seq not in stored:
            return broken(seq, f"anchor seq {seq} missing: the chain ends at seq {result.events} (tail cut)")
        if not stored[seq].startswith(anchored.lower()):
            found = f"hash {stored[seq][:12]}, anchored {anchored[:12]}"
            return broken(seq, f"anchor broken at seq {seq}: {found} (history rewritten)")
    return result


async def unsealed_events(
    engine: AsyncEngine, tenant: str, *, before: datetime, limit: int = 20
) -> tuple[int, list[UnsealedEvent]]:
    """The tenant's events still unsealed that happened before ``before``: how many, and the first ``limit``.

    Args:
        engine: the database.
        tenant: whose events.
        before: events at or after it are left out (recent ones, still within the seal interval).
        limit: how many to return (the oldest by insert order).
    """
    where = (AuditUnsealed.tenant == tenant) & (AuditUnsealed.at < before)
    async with snapshot(engine) as conn:
        total = int((await conn.execute(select(func.count()).where(where))).scalar_one())
        rows = await conn.execute(
            select(
                AuditUnsealed.id,
                AuditUnsealed.tenant,
                AuditUnsealed.kind,
                AuditUnsealed.request_id,
                AuditUnsealed.actor,
                AuditUnsealed.at,
            )
            .where(where)
            .order_by(AuditUnsealed.id)
            .limit(limit)
        )
        return total, [UnsealedEvent(int(r.id), r.tenant, r.kind, r.request_id, r.actor, r.at) for r in rows]


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction that sees one snapshot throughout; it never takes SQLite's write lock."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="REPEATABLE READ")
        else:
            # WAL: a deferred transaction reads one snapshot from its first read on.
            await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        async with conn.begin():
            yield conn
