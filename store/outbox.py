"""The outbox: side effects written in the same transaction as the state change they follow.

A worker loop::

    async with uow(sm) as tx:
        items = await tx.outbox.claim("worker-1", now=now, lease=timedelta(seconds=10))
    for item in items:                       # deliver outside any transaction
        try:
            await deliver(item)
        except Exception as exc:
            async with uow(sm) as tx:
                await tx.outbox.fail(item.id, "worker-1", now=now, error=str(exc), retry=policy)
        else:
            async with uow(sm) as tx:        # each item as soon as it is delivered
                await tx.outbox.ack(item.id, "worker-1", now=now)

and, while any item is still held, every few seconds ``renew`` the leases.

A claim takes a lease; a worker that dies before ``ack`` stops renewing it, so it runs out
and the item is claimed again (at-least-once: receivers dedupe on the item id or
``dedupe_key``). On PostgreSQL, claims use ``FOR UPDATE SKIP LOCKED`` so concurrent workers
never receive the same item; on SQLite the write transaction serializes claims.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import dialect_name, rowcount, table_of, upsert_insert
from store.models import OutboxItem

DEFAULT_GIVE_UP_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th failure waits ``min(cap, base * 2**(n-1))``
    scaled by a factor in ``[1 - jitter_ratio, 1]`` (``jitter`` returns a float in [0, 1);
    inject a constant in tests)."""

    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=10)
    jitter_ratio: float = 0.5
    jitter: Callable[[], float] = field(default=random.random)

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after the ``attempts``-th failed attempt."""
        raw = min(self.cap, self.base * (2 ** max(attempts - 1, 0)))
        factor: float = 1 - self.jitter_ratio * self.jitter()
        return timedelta(seconds=raw.total_seconds() * factor)


class FailOutcome(StrEnum):
    """What :meth:`Outbox.fail` did with the item."""

    RETRY = "retry"  # scheduled again after a backoff
    FAILED = "failed"  # past its ``expires_at``: given up, kept for inspection
    LOST_LEASE = "lost_lease"  # the lease had passed to another worker; nothing changed


class ItemState(StrEnum):
    """Where an outbox item is, for inspection."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class NewItem:
    """A side effect to queue (see :meth:`Outbox.enqueue_many`)."""

    tenant: str
    kind: str
    payload: Mapping[str, Any]
    dedupe_key: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox item as shown to operators."""

    id: int
    tenant: str
    kind: str
    state: ItemState
    attempts: int
    age: timedelta
    available_at: datetime
    last_error: str | None
    dedupe_key: str | None


class Outbox:
    """Enqueue, claim, acknowledge and inspect side effects, within a unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        # How many items this unit of work queued: a worker need not be woken for none.
        self.enqueued = 0

    async def enqueue(
        self,
        tenant: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        now: datetime,
        dedupe_key: str | None = None,
        available_at: datetime | None = None,
        give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
    ) -> int | None:
        """Queue a side effect; it commits (or rolls back) with the caller's unit of work.

        Args:
            tenant: whose effect.
            kind: ``slack.post_card``, ``slack.update_card``, ``callback.deliver``...
            payload: JSON-able data the worker needs.
            now: creation time.
            dedupe_key: if given, a second enqueue with the same key is ignored.
            available_at: not before this time (default: now).
            give_up_after: after this long, a failure marks the item failed instead of retrying.

        Returns:
            The item id, or None if ``dedupe_key`` was already queued.
        """
        values = {
            "tenant": tenant,
            "kind": kind,
            "payload": dict(payload),
            "dedupe_key": dedupe_key,
            "created_at": now,
            "available_at": available_at or now,
            "expires_at": now + give_up_after,
            "attempts": 0,
        }
        # On the table with the values as parameters: see RequestRepository.create.
        table = table_of(OutboxItem)
        stmt = upsert_insert(self._session, table)
        if dedupe_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
        result = await self._session.execute(stmt.returning(table.c.id), values)
        item_id = result.scalar_one_or_none()
        if item_id is None:
            return None
        self.enqueued += 1
        return int(item_id)

    async def enqueue_many(self, items: Sequence[NewItem], *, now: datetime) -> None:
        """Queue many side effects in one statement (group commit); a known ``dedupe_key`` is skipped."""
        if not items:
            return
        rows = [
            {
                "tenant": i.tenant, "kind": i.kind, "payload": dict(i.payload), "dedupe_key": i.dedupe_key,
                "created_at": now, "available_at": now, "expires_at": now + DEFAULT_GIVE_UP_AFTER, "attempts": 0,
            }
            for i in items
        ]  # fmt: skip
        stmt = upsert_insert(self._session, table_of(OutboxItem)).on_conflict_do_nothing(index_elements=["dedupe_key"])
        await self._session.execute(stmt, rows)
        self.enqueued += len(rows)

    async def claim(
        self,
        worker: str,
        *,
        now: datetime,
        lease: timedelta,
        limit: int = 10,
        kinds: Iterable[str] | None = None,
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` available items to ``worker``; each counts one attempt.

        An item is available when not done or failed, ``available_at <= now`` and it has no
        live lease. Commit the unit of work right after claiming, then deliver.

        Args:
            worker: lease owner id (unique per worker process).
            now: current time.
            lease: how long the worker may take before the item can be claimed again.
            limit: most items to return.
            kinds: only these kinds (default: all).

        Returns:
            The claimed items, oldest available first.
        """
        free = or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until <= now)
        ready = and_(OutboxItem.done_at.is_(None), OutboxItem.failed_at.is_(None), OutboxItem.available_at <= now, free)
        if kinds is not None:
            ready = and_(ready, OutboxItem.kind.in_(list(kinds)))
        pick = select(OutboxItem.id).where(ready).order_by(OutboxItem.available_at, OutboxItem.id).limit(limit)
        if dialect_name(self._session) == "postgresql":
            # Materialized, so the candidates are picked (and locked) once: as a plain IN (...) the
            # planner may re-run the subquery per row, and the LIMIT no longer bounds the claim
            # (one worker took the whole backlog).
            picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            chosen = OutboxItem.id.in_(select(picked.c.id))
        else:
            chosen = OutboxItem.id.in_(pick.scalar_subquery())
        result = await self._session.scalars(
            update(OutboxItem)
            # ``ready`` again: under READ COMMITTED a row may have changed since the pick.
            .where(chosen, ready)
            .values(lease_owner=worker, lease_until=now + lease, attempts=OutboxItem.attempts + 1)
            .returning(OutboxItem)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return sorted(result.all(), key=lambda i: (i.available_at, i.id))

    async def ack(self, item_id: int, worker: str, *, now: datetime) -> bool:
        """Mark a delivered item done. False if ``worker`` no longer holds its lease."""
        return await self.ack_many([item_id], worker, now=now) == 1

    async def ack_many(self, item_ids: Sequence[int], worker: str, *, now: datetime) -> int:
        """Mark delivered items done in one statement; returns how many ``worker`` still held."""
        if not item_ids:
            return 0
        result = await self._session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(item_ids), OutboxItem.lease_owner == worker, OutboxItem.done_at.is_(None))
            .values(done_at=now, lease_owner=None, lease_until=None, last_error=None)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    async def renew(self, item_ids: Collection[int], worker: str, *, now: datetime, lease: timedelta) -> set[int]:
        """Extend ``worker``'s leases on ``item_ids`` to ``now + lease`` (a heartbeat).

        Returns:
            The ids it still held (not done, not failed, not claimed by another worker since):
            those missing are no longer the worker's to deliver.
        """
        if not item_ids:
            return set()
        table = table_of(OutboxItem)
        result = await self._session.execute(
            update(table)
            .where(
                table.c.id.in_(list(item_ids)),
                table.c.lease_owner == worker,
                table.c.done_at.is_(None),
                table.c.failed_at.is_(None),
            )
            .values(lease_until=now + lease)
            .returning(table.c.id)
        )
        return {int(i) for i in result.scalars()}

    async def fail(
        self,
        item_id: int,
        worker: str,
        *,
        now: datetime,
        error: str,
        retry: RetryPolicy | None = None,
        give_up: bool = False,
        reached: bool = True,
    ) -> FailOutcome:
        """Record a failed delivery: retry after a backoff, or give up past ``expires_at``.

        Args:
            item_id: the item.
            worker: the worker that held the lease.
            now: current time.
            error: what went wrong (kept in ``last_error``, truncated to 2000 characters).
            retry: backoff policy (default :class:`RetryPolicy`).
            give_up: no retry can help (the payload cannot be read): mark it failed now.
            reached: False if the attempt never got to the receiver (refused before acting: a 429, a
                turn not come): it is not counted, so the next one does not look for its traces.

        Returns:
            What happened (:class:`FailOutcome`).
        """
        item = (
            await self._session.scalars(
                select(OutboxItem)
                .where(OutboxItem.id == item_id, OutboxItem.lease_owner == worker, OutboxItem.done_at.is_(None))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).one_or_none()
        if item is None:
            return FailOutcome.LOST_LEASE
        item.last_error = error[:2000]
        if not reached and item.attempts == 1:
            # Its first attempt never got to the receiver: the item is as good as never tried, and its
            # retry need not look for traces. After an earlier attempt that may have, the count stays.
            item.attempts = 0
        item.lease_owner = None
        item.lease_until = None
        if give_up or now >= item.expires_at:
            item.failed_at = now
            outcome = FailOutcome.FAILED
        else:
            item.available_at = min(now + (retry or RetryPolicy()).delay(item.attempts), item.expires_at)
            outcome = FailOutcome.RETRY
        await self._session.flush()
        return outcome

    async def next_available_at(self, *, now: datetime, kinds: Iterable[str] | None = None) -> datetime | None:
        """When the next item (of ``kinds``, default all) becomes claimable, for a worker to sleep until.

        An item leased to a worker becomes claimable when that lease runs out (if it is not
        renewed): counting it as available now would have an idle worker claim in a busy loop
        while another one delivers it.
        """
        undone = and_(OutboxItem.done_at.is_(None), OutboxItem.failed_at.is_(None))
        if kinds is not None:
            undone = and_(undone, OutboxItem.kind.in_(list(kinds)))
        free = or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until <= now)
        due = select(func.min(OutboxItem.available_at)).where(undone, free).scalar_subquery()
        leased = select(func.min(OutboxItem.lease_until)).where(undone, OutboxItem.lease_until > now).scalar_subquery()
        row = (await self._session.execute(select(due, leased))).one()
        found = [at for at in row if at is not None]
        return min(found) if found else None

    async def inspect(
        self,
        *,
        now: datetime,
        tenant: str | None = None,
        states: Iterable[ItemState] = (ItemState.PENDING, ItemState.LEASED, ItemState.FAILED),
        dedupe_key: str | None = None,
        limit: int = 100,
    ) -> list[OutboxEntry]:
        """Items in the given states with their age, oldest first (for operators and ``/hitl show``)."""
        undone = OutboxItem.done_at.is_(None) & OutboxItem.failed_at.is_(None)
        # The states as SQL, so the limit is the database's and nothing is loaded only to be dropped.
        in_state = {
            ItemState.DONE: OutboxItem.done_at.is_not(None),
            ItemState.FAILED: OutboxItem.done_at.is_(None) & OutboxItem.failed_at.is_not(None),
            ItemState.LEASED: undone & (OutboxItem.lease_until > now),
            ItemState.PENDING: undone & (OutboxItem.lease_until.is_(None) | (OutboxItem.lease_until <= now)),
        }
        query = select(OutboxItem).where(or_(*(in_state[s] for s in set(states))))
        if tenant is not None:
            query = query.where(OutboxItem.tenant == tenant)
        if dedupe_key is not None:
            query = query.where(OutboxItem.dedupe_key == dedupe_key)
        rows = await self._session.scalars(query.order_by(OutboxItem.created_at, OutboxItem.id).limit(limit))
        return [_entry(item, now) for item in rows]


def _entry(item: OutboxItem, now: datetime) -> OutboxEntry:
    if item.done_at is not None:
        state = ItemState.DONE
    elif item.failed_at is not None:
        state = ItemState.FAILED
    elif item.lease_until is not None and item.lease_until > now:
        state = ItemState.LEASED
    else:
        state = ItemState.PENDING
    return OutboxEntry(
        id=item.id,
        tenant=item.tenant,
        kind=item.kind,
        state=state,
        attempts=item.attempts,
        age=now - item.created_at,
        available_at=item.available_at,
        last_error=item.last_error,
        dedupe_key=item.dedupe_key,
    )
