"""The append-only, hash-chained audit log; one chain per tenant.

Each event links to the one before it::

    hash = sha256(prev_hash || canonical_json(event))

where ``prev_hash`` is the previous event's hex hash (64 zeros for the first event), ``||``
is concatenation of the ASCII hex text and the UTF-8 JSON, and ``event`` is the object
``{"tenant", "seq", "kind", "request_id", "actor", "at", "payload"}`` with ``at`` in
ISO 8601 UTC (``2025-01-31T09:30:00.000000Z``). ``seq`` starts at 1 and has no gaps.

Appends for one tenant are serialized by the ``audit_head`` row: a compare-and-set ``UPDATE``
from the head this process last wrote, or on a miss ``SELECT ... FOR UPDATE``, on PostgreSQL;
``BEGIN IMMEDIATE`` on SQLite. The head also records the last link, so
``verify`` notices a deleted or added tail event. There is no update or delete here.

The head row lives in the same database as the chain, so someone who can write both can cut
the tail and rewrite the head to match; :func:`verify_anchored` catches that against a link
(seq and hash) recorded outside the database by an earlier verify.

Events no tenant vouches for (Slack requests refused before any tenant is known) go to the
system chain, :data:`SYSTEM_CHAIN`, through :func:`append_system`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_basestring
from typing import Any

from sqlalchemy import String, bindparam, insert, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from policy.sensitive import canonical_json, redact
from store._sql import rowcount, table_of, upsert_insert
from store.engine import SQLITE_BEGIN, audit_heads
from store.errors import TenantUnknown
from store.models import AuditEvent, AuditHead, Request, Tenant

GENESIS_HASH = "0" * 64
# The chain of events no tenant vouches for. The dot keeps the name out of ``[a-z0-9_-]``, the
# pattern every manifest (policy.models.NAME) and stored tenant name (store.tenants.check_name)
# must match: no tenant can ever be called this, so nothing of a tenant lands in it or reads it.
SYSTEM_CHAIN = ".system"
# An anchor's hash: the full 64 hex digits, or a prefix no shorter than the 12 verify used to print.
ANCHOR_HASH = re.compile(r"[0-9a-fA-F]{12,64}")


def format_at(at: datetime) -> str:
    """The ISO 8601 UTC spelling of a time used inside the hash (microseconds, ``Z``)."""
    if at.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    prev_hash: str,
    *,
    tenant: str,
    seq: int,
    kind: str,
    request_id: str | None,
    actor: str | None,
    at: str,
    payload: Any,
) -> str:
    """``sha256(prev_hash || canonical_json(event))`` as hex (see the module docstring)."""
    event = {
        "tenant": tenant,
        "seq": seq,
        "kind": kind,
        "request_id": request_id,
        "actor": actor,
        "at": at,
        "payload": payload,
    }
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as read back (``payload`` parsed)."""

    tenant: str
    seq: int
    prev_hash: str
    hash: str
    kind: str
    request_id: str | None
    actor: str | None
    at: datetime
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``at`` in the hashed spelling), as exported."""
        return {
            "tenant": self.tenant,
            "seq": self.seq,
            "kind": self.kind,
            "request_id": self.request_id,
            "actor": self.actor,
            "at": format_at(self.at),
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class NewEvent:
    """An event to append (see :meth:`AuditLog.append_many`)."""

    tenant: str
    kind: str
    at: datetime
    payload: Mapping[str, Any]
    request_id: str | None = None
    actor: str | None = None


def request_event(
    request: Request,
    kind: str,
    *,
    now: datetime,
    sensitive: Iterable[str],
    actor: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> NewEvent:
    """An event about a request; sensitive params enter the audit only as digests."""
    payload: dict[str, Any] = {
        "action": request.action,
        "params": redact(request.params, sensitive),
        "params_sha256": request.params_sha256,
        "status": str(request.status),
        "stage": request.stage,
    }
    payload.update(extra or {})
    return NewEvent(request.tenant, kind, now, payload, request.id, actor)


class AuditLog:
    """Appends and reads audit events within a unit of work. Append-only by construction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(
        self,
        tenant: str,
        kind: str,
        *,
        now: datetime,
        payload: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> AuditRecord:
        """Append one event to the tenant's chain.

        Never put raw request params in ``payload``; use :meth:`append_request_event`, which
        replaces sensitive values with their digest.

        Args:
            tenant: the chain to extend.
            kind: what happened, dotted (``request.created``, ``vote.cast``, ``click.refused``).
            now: the event time.
            payload: JSON-able details; stored as canonical JSON.
            request_id: the request concerned, if any.
            actor: the Slack user or key that caused it, if any.

        Returns:
            The stored event, with its ``seq`` and ``hash``.

        Raises:
            TenantUnknown: the tenant has no row.
        """
        new = NewEvent(tenant, kind, now, payload or {}, request_id, actor)
        return (await self._append_run(tenant, [new]))[0]

    async def _append_run(self, tenant: str, events: Sequence[NewEvent]) -> list[AuditRecord]:
        """Link ``events`` (all of ``tenant``) after its head: one head move and one insert, however many."""
        # Round-trip through canonical JSON so the stored text and the hashed value are the
        # same thing whatever the caller passed (tuples, datetimes, non-str keys).
        texts = [canonical_json(dict(e.payload)) for e in events]
        parsed: list[dict[str, Any]] = [json.loads(t) for t in texts]

        def link(head: tuple[int, str]) -> list[tuple[int, str, str]]:
            """(seq, prev_hash, hash) of each event, chained after ``head``."""
            links, (seq, digest) = [], head
            for e, payload in zip(events, parsed, strict=True):
                seq, prev = seq + 1, digest
                digest = event_hash(
                    prev, tenant=tenant, seq=seq, kind=e.kind, request_id=e.request_id, actor=e.actor,
                    at=format_at(e.at), payload=payload,
                )  # fmt: skip
                links.append((seq, prev, digest))
            return links

        # The head this process last wrote is usually still the head: move it with a compare-and-set
        # (one statement, which also takes the row lock) instead of locking, reading and writing it.
        # Another writer, a rolled-back transaction or a first append makes the guess miss, and then
        # the head is locked and read as ever.
        heads = self._heads()
        guess = heads.get(tenant)
        links = link(guess or (0, GENESIS_HASH))
        last = {"head_tenant": tenant, "seq": links[-1][0], "hash": links[-1][2]}
        moved = guess is not None and rowcount(
            await self._session.execute(_MOVE_HEAD_FROM, {**last, "head_seq": guess[0], "head_hash": guess[1]})
        )
        if not moved:
            links = link(await self._lock_head(tenant))
            last = {"head_tenant": tenant, "seq": links[-1][0], "hash": links[-1][2]}
            await self._session.execute(_MOVE_HEAD, last)
        heads[tenant] = (links[-1][0], links[-1][2])
        # Core statements on the tables with the values as parameters, not ORM objects: appends
        # are hot, and both the ORM flush and per-value statement building double their cost.
        rows = [
            {
                "tenant": tenant, "seq": seq, "prev_hash": prev, "hash": digest, "kind": e.kind,
                "request_id": e.request_id, "actor": e.actor, "at": e.at, "payload": text,
            }
            for e, text, (seq, prev, digest) in zip(events, texts, links, strict=True)
        ]  # fmt: skip
        await self._session.execute(insert(table_of(AuditEvent)), rows[0] if len(rows) == 1 else rows)
        return [
            AuditRecord(tenant, seq, prev, digest, e.kind, e.request_id, e.actor, e.at.astimezone(UTC), payload)
            for e, payload, (seq, prev, digest) in zip(events, parsed, links, strict=True)
        ]

    async def append_request_event(
        self,
        request: Request,
        kind: str,
        *,
        now: datetime,
        sensitive: Iterable[str],
        actor: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append an event about a request; sensitive params enter the audit only as digests.

        Args:
            request: the request concerned.
            kind: event kind (``request.created``, ``request.decided``...).
            now: the event time.
            sensitive: dotted param paths to redact (the action's ``sensitive:`` list).
            actor: who caused it.
            extra: more payload fields; must not hold raw sensitive values.

        Returns:
            The stored event.
        """
        e = request_event(request, kind, now=now, sensitive=sensitive, actor=actor, extra=extra)
        return await self.append(e.tenant, e.kind, now=e.at, payload=e.payload, request_id=e.request_id, actor=e.actor)

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        """Append many events (group commit), in order: per tenant, one head move and one insert."""
        runs: dict[str, list[NewEvent]] = {}
        for e in events:
            runs.setdefault(e.tenant, []).append(e)
        for tenant, run in runs.items():
            await self._append_run(tenant, run)

    async def head(self, tenant: str) -> tuple[int, str]:
        """``(last seq, last hash)`` of the tenant's chain; ``(0, GENESIS_HASH)`` when empty."""
        row = await self._session.get(AuditHead, tenant)
        return (row.seq, row.hash) if row else (0, GENESIS_HASH)

    async def for_request(self, tenant: str, request_id: str) -> list[AuditRecord]:
        """Every event of one request of one tenant, in chain order."""
        result = await self._session.execute(
            select(*_COLUMNS)
            .where(AuditEvent.tenant == tenant, AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        )
        return [_record(r) for r in result]

    async def recent(self, tenant: str, *, limit: int = 50) -> list[AuditRecord]:
        """The tenant's last ``limit`` events, newest first."""
        result = await self._session.execute(
            select(*_COLUMNS).where(AuditEvent.tenant == tenant).order_by(AuditEvent.seq.desc()).limit(limit)
        )
        return [_record(r) for r in result]

    def _heads(self) -> dict[str, tuple[int, str]]:
        bind = self._session.bind
        engine = bind.engine if isinstance(bind, AsyncConnection) else bind
        return audit_heads(engine) if isinstance(engine, AsyncEngine) else {}

    async def _lock_head(self, tenant: str) -> tuple[int, str]:
        stmt = select(AuditHead.seq, AuditHead.hash).where(AuditHead.tenant == tenant).with_for_update()
        head = (await self._session.execute(stmt)).first()
        if head is not None:
            return int(head.seq), str(head.hash)
        if await self._session.get(Tenant, tenant) is None:
            raise TenantUnknown(f"unknown tenant {tenant!r}")
        # First event of a tenant created before its head row: concurrent first appends
        # meet at the primary key; the loser waits, then locks the winner's row.
        ensure = upsert_insert(self._session, AuditHead).values(tenant=tenant, seq=0, hash=GENESIS_HASH)
        await self._session.execute(ensure.on_conflict_do_nothing(index_elements=["tenant"]))
        head = (await self._session.execute(stmt)).one()
        return int(head.seq), str(head.hash)


_MOVE_HEAD = update(table_of(AuditHead)).where(table_of(AuditHead).c.tenant == bindparam("head_tenant"))
# The compare-and-set: moves the head only from where this process last left it.
_MOVE_HEAD_FROM = _MOVE_HEAD.where(
    table_of(AuditHead).c.seq == bindparam("head_seq"), table_of(AuditHead).c.hash == bindparam("head_hash")
)


async def append_system(
    session: AsyncSession, kind: str, *, now: datetime, payload: Mapping[str, Any] | None = None
) -> AuditRecord:
    """Append one event to the system chain (:data:`SYSTEM_CHAIN`), creating the chain on first use.

    The chain's tenant row is made here rather than by a migration: it exists only once
    something was appended (:meth:`~store.tenants.TenantRepository.names` leaves it out). The insert is a
    no-op when the row exists (and on a race, the loser waits at the primary key); the head
    row then comes from :meth:`AuditLog.append`, as for a tenant's first event.

    Args:
        session: the unit of work's session.
        kind: what happened (``slack.refused``).
        now: the event time.
        payload: JSON-able details; never a request body or a secret.

    Returns:
        The stored event.
    """
    ensure = upsert_insert(session, Tenant).values(name=SYSTEM_CHAIN, created_at=now, config_version=0)
    await session.execute(ensure.on_conflict_do_nothing(index_elements=["name"]))
    return await AuditLog(session).append(SYSTEM_CHAIN, kind, now=now, payload=payload)


_COLUMNS = (
    AuditEvent.tenant,
    AuditEvent.seq,
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.kind,
    AuditEvent.request_id,
    AuditEvent.actor,
    AuditEvent.at,
    AuditEvent.payload,
)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        tenant=row.tenant,
        seq=row.seq,
        prev_hash=row.prev_hash,
        hash=row.hash,
        kind=row.kind,
        request_id=row.request_id,
        actor=row.actor,
        at=row.at,
        payload=json.loads(row.payload),
    )


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``broken_seq`` is the first link that fails, or None."""

    tenant: str
    events: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None

    def describe(self) -> str:
        """One line for people: ``ok: 12 events, head 1a2b3c4d5e6f`` or what broke where."""
        if self.ok:
            return f"ok: {self.events} events, head {self.head_hash[:12]}"
        return f"{self.problem}"


async def verify(engine: AsyncEngine, tenant: str, *, batch: int = 5000) -> VerifyResult:
    """Walk the tenant's chain from the first event and report the first broken link.

    Reads in batches through a streaming cursor, so memory stays flat for any chain length.

    Args:
        engine: the database.
        tenant: whose chain.
        batch: rows fetched per round trip.

    Returns:
        ``VerifyResult``; ``ok`` is False when an event was edited (hash mismatch), removed
        (gap in ``seq``), moved (hash mismatch at the new place), inserted (gap, hash or link
        mismatch, or an event past the recorded head), or the tail was cut (head mismatch).
    """
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    async with engine.connect() as conn:
        await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        async with conn.begin():
            head_row = (
                await conn.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.tenant == tenant))
            ).first()
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
            stream = await conn.stream(query.execution_options(yield_per=batch))
            async for part in stream.partitions():
                for seq, prev_hash, stored_hash, kind, request_id, actor, at, payload in part:
                    if seq > head_seq:
                        problem = f"broken at seq {seq}: event past the recorded head {head_seq} (row inserted)"
                        return _broken(tenant, count, seq, problem)
                    if seq != expected_seq:
                        missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
                        return _broken(tenant, count, expected_seq, f"gap: seq {missing} missing (row deleted)")
                    # The row's own content first (edited or moved), then its link to the previous row.
                    computed = _row_hash(tenant, seq, prev_hash, stored_hash, kind, request_id, actor, at, payload)
                    if computed != stored_hash:
                        return _broken(tenant, count, seq, f"broken at seq {seq}: hash mismatch (row edited or moved)")
                    if prev_hash != prev:
                        problem = f"broken at seq {seq}: prev_hash does not match seq {seq - 1} (chain relinked)"
                        return _broken(tenant, count, seq, problem)
                    prev = stored_hash
                    expected_seq += 1
                    count += 1
    if count != head_seq:
        return _broken(tenant, count, count + 1, f"gap: seq {count + 1}-{head_seq} missing (tail deleted)")
    if prev != head_hash:
        return _broken(tenant, count, count, f"broken at seq {count}: does not match the recorded head (row replaced)")
    return VerifyResult(tenant, count, prev)


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
    async with engine.connect() as conn:
        await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        async with conn.begin():
            rows = await conn.execute(
                select(AuditEvent.seq, AuditEvent.hash).where(
                    AuditEvent.tenant == tenant, AuditEvent.seq.in_([s for s in anchors if s > 0])
                )
            )
            stored = {int(seq): str(digest) for seq, digest in rows}
    stored[0] = GENESIS_HASH
    for seq, anchored in sorted(anchors.items()):
        # Only the walked part counts: a row past it (appended since the walk) was not verified.
        if seq > result.events or seq not in stored:
            problem = f"anchor seq {seq} missing: the chain ends at seq {result.events} (tail cut)"
            return _broken(tenant, result.events, seq, problem)
        if not stored[seq].startswith(anchored.lower()):
            problem = (
                f"anchor broken at seq {seq}: hash {stored[seq][:12]}, anchored {anchored[:12]} (history rewritten)"
            )
            return _broken(tenant, result.events, seq, problem)
    return result


def _row_hash(
    tenant: str,
    seq: int,
    prev_hash: str,
    stored_hash: str,
    kind: str,
    request_id: str | None,
    actor: str | None,
    at: datetime | str,
    payload: str,
) -> str:
    """The hash a stored row should carry, computed cheaply.

    The stored payload is already canonical JSON, so the event's canonical JSON is spliced
    together around it (keys in sorted order) instead of parsing and re-serializing it:
    verify is I/O plus one sha256 per row. If the splice does not match (a payload stored
    in another spelling), the exact definition decides.
    """
    if isinstance(at, str):
        # SQLite text ``YYYY-MM-DD HH:MM:SS.ffffff`` (naive UTC) -> the hashed spelling.
        at_text = f"{at[:10]}T{at[11:]}Z" if len(at) == 26 and at[10] == " " else _sqlite_at(at)
    else:
        at_text = format_at(at)
    text = (
        f'{{"actor":{_json_str(actor)},"at":"{at_text}","kind":{_json_str(kind)},"payload":{payload},'
        f'"request_id":{_json_str(request_id)},"seq":{seq},"tenant":{_json_str(tenant)}}}'
    )
    digest = hashlib.sha256((prev_hash + text).encode()).hexdigest()
    if digest == stored_hash:
        return digest
    try:
        parsed = json.loads(payload)
    except ValueError:
        return ""
    return event_hash(
        prev_hash, tenant=tenant, seq=seq, kind=kind, request_id=request_id, actor=actor, at=at_text, payload=parsed
    )


def _sqlite_at(text: str) -> str:
    try:
        return format_at(datetime.fromisoformat(text).replace(tzinfo=UTC))
    except ValueError:
        return text


def _json_str(value: str | None) -> str:
    # What json.dumps(..., ensure_ascii=False) writes for a str or None.
    return "null" if value is None else _encode_basestring(value)


def _broken(tenant: str, count: int, seq: int, problem: str) -> VerifyResult:
    return VerifyResult(tenant, count, "", broken_seq=seq, problem=problem)


async def export(
    engine: AsyncEngine,
    tenant: str,
    *,
    since_seq: int | None = None,
    since_at: datetime | None = None,
    batch: int = 2000,
) -> AsyncIterator[AuditRecord]:
    """Stream the tenant's events in chain order without loading them all.

    Args:
        engine: the database.
        tenant: whose chain; other tenants' events are never read.
        since_seq: only events with ``seq >= since_seq``.
        since_at: only events with ``at >= since_at``.
        batch: rows fetched per round trip.

    Yields:
        Each event, oldest first.
    """
    query = select(*_COLUMNS).where(AuditEvent.tenant == tenant)
    if since_seq is not None:
        query = query.where(AuditEvent.seq >= since_seq)
    if since_at is not None:
        query = query.where(AuditEvent.at >= since_at)
    async with engine.connect() as conn:
        await conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        async with conn.begin():
            stream = await conn.stream(query.order_by(AuditEvent.seq).execution_options(yield_per=batch))
            async for row in stream:
                yield _record(row)
