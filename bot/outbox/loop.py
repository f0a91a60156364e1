"""The outbox worker: claims side effects, hands each to the delivery for its kind, records the outcome.

Items are claimed with a short lease that a heartbeat renews while the batch is in flight: a live
worker keeps its items however slow the receiver, and a dead one's are claimed by another replica
within a lease (10 s). Each item is acknowledged as soon as it is delivered, so after a crash only
the item in flight is delivered again (and the deliveries look for what an earlier attempt left in
Slack before posting). Acknowledgements are group-committed: those that come while one commit is
under way share the next, with what their deliveries record (a card's ts), in one transaction.
Up to four batches are in flight at once, so a card queued while a batch waits on Slack or on its
acks is claimed at once rather than after that batch. One request's items in two batches still go
in claim order (the later waits for the earlier), so a thread note queued while its card is being
posted finds the card.

A failure is sorted: Slack's ``Retry-After`` reschedules the item exactly, an unreadable item is
given up on, anything else is retried after a backoff until it expires.

The worker survives its database: a failed claim, read or write is logged and retried after a
backoff (a PostgreSQL restart delays deliveries, it does not end them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.logs import log_context
from bot.outbox.delivery import Delivery, GiveUp, PassAware, Recording, RetryAfter
from bot.service.groupcommit import GroupCommit
from bot.service.signals import Signals
from store.models import OutboxItem
from store.outbox import RetryPolicy
from store.uow import uow

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=10)
HEARTBEAT = timedelta(seconds=3)  # well inside the lease: two renewals may fail before it runs out
RETRY = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(minutes=5))
# After a failed pass (the database unreachable): 0.5 s, 1 s, 2 s ... at most 10 s between tries.
DATABASE_RETRY = RetryPolicy(base=timedelta(milliseconds=500), cap=timedelta(seconds=10), jitter_ratio=0.2)
IDLE = 1.0  # seconds between looks at the database when nothing wakes the worker (other replicas' items)


class OutboxWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        handlers: Sequence[Delivery],
        signals: Signals,
        clock: Clock,
        batch: int = 50,
        passes: int = 4,
        lease: timedelta = LEASE,
        heartbeat: timedelta = HEARTBEAT,
        retry: RetryPolicy = RETRY,
        retry_for: Mapping[str, RetryPolicy] | None = None,
        database_retry: RetryPolicy = DATABASE_RETRY,
        worker_id: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.signals = signals
        self.clock = clock
        self.batch = batch
        self.passes = passes
        self.lease = lease
        self.heartbeat = heartbeat
        # Backoffs are attributes so a test (or an operator's tuning) can shorten them without sleeping.
        self.retry = retry
        self.retry_for = dict(retry_for or {})
        self.database_retry = database_retry
        self.id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._handlers: dict[str, Delivery] = {}
        for handler in handlers:
            for kind in handler.kinds:
                if kind in self._handlers:
                    raise ValueError(f"two deliveries for outbox kind {kind!r}")
                self._handlers[kind] = handler
        self._kinds = frozenset(self._handlers)
        self._passes = [h for h in handlers if isinstance(h, PassAware)]
        # Ids of the claimed items this worker still holds a lease on (the heartbeat renews them).
        self._held: set[int] = set()
        # Per request, the order its groups in flight deliver in (see _deliver_group).
        self._requests: dict[str, asyncio.Lock] = {}
        self._waiting: Counter[str] = Counter()
        self._acks: GroupCommit[_Ack, None] = GroupCommit(self._commit_acks)

    def wake(self) -> None:
        """Something was queued (kept until the use cases call ``signals.queued()`` themselves)."""
        self.signals.queued()

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set, with up to ``passes`` batches in flight: a batch whose deliveries
        are slow does not hold back what was queued after it. Sleeps until woken, the next item is due
        (at most IDLE), a batch ends while all are in flight, or after a failed claim until the database
        backoff has passed."""
        failures = 0
        flying: set[asyncio.Task[int]] = set()
        try:
            while not stop.is_set():
                # Cleared before the claim, not after: a wake meanwhile (an item committed after our claim)
                # must cut the sleep short, or that item waits for the idle timeout.
                self.signals.outbox.clear()
                if len(flying) >= self.passes:
                    stopping = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait(flying | {stopping}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopping.cancel()
                    continue
                try:
                    items = await self._claim()
                    timeout = 0.0 if items else await self._idle_seconds()
                    failures = 0
                except Exception:
                    failures += 1
                    timeout = self.database_retry.delay(failures).total_seconds()
                    log.exception("outbox worker pass failed (%s in a row): next try in %.1f s", failures, timeout)
                    items = []
                if items:
                    flying.add(task := asyncio.create_task(self._deliver_batch(items), name=f"{self.id}-pass"))
                    task.add_done_callback(flying.discard)
                    task.add_done_callback(_log_failure)
                    continue
                await _first(stop, self.signals.outbox, timeout=timeout)
        finally:
            # Stopping lets the batches in flight finish (each item is acked as it is delivered).
            await asyncio.gather(*flying, return_exceptions=True)

    async def _idle_seconds(self) -> float:
        async with uow(self.sessionmaker, read_only=True) as tx:
            nxt = await tx.outbox.next_available_at(now=self.clock.now(), kinds=self._kinds)
        if nxt is None:
            return IDLE
        return max(0.0, min(IDLE, (nxt - self.clock.now()).total_seconds()))

    async def drain_once(self) -> int:
        """Claim and deliver one batch; returns how many items were claimed."""
        items = await self._claim()
        return await self._deliver_batch(items) if items else 0

    async def _claim(self) -> list[OutboxItem]:
        async with uow(self.sessionmaker) as tx:
            return list(
                await tx.outbox.claim(
                    self.id, now=self.clock.now(), lease=self.lease, limit=self.batch, kinds=self._kinds
                )
            )

    async def _deliver_batch(self, items: Sequence[OutboxItem]) -> int:
        for handler in self._passes:
            mine = [item for item in items if item.kind in handler.kinds]
            try:
                await handler.begin_pass(mine)
            except Exception:
                # Only a read ahead: each delivery reads what it needs itself when it finds nothing read.
                log.warning("could not read ahead for %s outbox items", len(mine), exc_info=True)
        ids = {item.id for item in items}
        self._held |= ids
        # One request's effects stay in order (post before update); different requests go in parallel.
        groups: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            groups[str(item.payload.get("request_id") or item.id)].append(item)
        heartbeat = asyncio.create_task(self._heartbeat(ids), name=f"{self.id}-heartbeat")
        try:
            await asyncio.gather(*(self._deliver_group(key, group) for key, group in groups.items()))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._held -= ids
        return len(items)

    async def _heartbeat(self, ids: set[int]) -> None:
        """Renew the leases of the batch's items still held, every ``heartbeat``, until cancelled."""
        while True:
            await asyncio.sleep(self.heartbeat.total_seconds())
            await self.renew_leases(ids)

    async def renew_leases(self, among: set[int] | None = None) -> None:
        """Renew the leases this worker holds (of ``among`` only, if given)."""
        held = self._held & among if among is not None else set(self._held)
        if not held:
            return
        try:
            async with uow(self.sessionmaker) as tx:
                kept = await tx.outbox.renew(held, self.id, now=self.clock.now(), lease=self.lease)
        except Exception:
            # The next beat tries again; the lease outlasts a couple of missed ones.
            log.warning("could not renew the leases of %s outbox items", len(held), exc_info=True)
            return
        # Done meanwhile, or (after missed beats) claimed by another worker: not ours to deliver any more.
        self._held -= held - kept

    async def _commit_acks(self, acks: Sequence[_Ack]) -> Sequence[Exception | None]:
        """Acknowledge ``acks`` (and record their outcomes) in one transaction; if that fails, one at a
        time, so one item whose record cannot be written does not undo its batch-mates'."""
        try:
            await self._write_acks(acks)
            return [None] * len(acks)
        except Exception as exc:
            if len(acks) == 1:
                return [exc]
        results: list[Exception | None] = []
        for ack in acks:
            try:
                await self._write_acks([ack])
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    async def _write_acks(self, acks: Sequence[_Ack]) -> None:
        outcomes: dict[Recording, list[object]] = defaultdict(list)
        for ack in acks:
            if ack.outcome is not None and isinstance(ack.handler, Recording):
                outcomes[ack.handler].append(ack.outcome)
        queued = False
        async with uow(self.sessionmaker) as tx:
            for handler, recorded in outcomes.items():
                queued = await handler.record(tx, recorded) or queued
            held = await tx.outbox.ack_many([ack.item_id for ack in acks], self.id, now=self.clock.now())
        if queued:
            self.signals.queued()
        if held < len(acks):
            log.warning("%s outbox items delivered after their leases passed to another worker", len(acks) - held)

    async def _deliver_group(self, key: str, items: list[OutboxItem]) -> None:
        # A request's items in two batches in flight go in claim order: the later waits for the earlier
        # group (its posts recorded, its items acked), as if the batches had run one after the other.
        lock = self._requests.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            async with lock:
                await self._deliver_in_order(items)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._requests[key]

    async def _deliver_in_order(self, items: list[OutboxItem]) -> None:
        for item in items:
            if item.id not in self._held:
                log.warning("outbox item %s (%s): lease lost before delivery, left to its owner", item.id, item.kind)
                continue
            request_id = item.payload.get("request_id")
            with log_context(tenant=item.tenant, request_id=request_id if isinstance(request_id, str) else None):
                await self._deliver(item)
            self._held.discard(item.id)

    async def _deliver(self, item: OutboxItem) -> None:
        """Deliver one item and record the outcome at once (its own commit)."""
        handler = self._handlers[item.kind]
        delivered, give_up, retry, error = False, False, self.retry_for.get(item.kind, self.retry), ""
        reached = True
        outcome: object | None = None
        try:
            outcome = await handler.deliver(item)
            delivered = True
        except RetryAfter as exc:
            error = f"{exc} (retry after {exc.seconds:g} s)"
            retry = RetryPolicy(base=timedelta(seconds=exc.seconds), cap=timedelta(seconds=exc.seconds), jitter_ratio=0)
            reached = exc.reached
        except GiveUp as exc:
            give_up, error = True, f"{type(exc).__name__}: {exc}"
            log.error("outbox item %s (%s) cannot be delivered: %s", item.id, item.kind, exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("outbox item %s (%s) failed: %s", item.id, item.kind, error)
        try:
            if delivered:
                await self._acks.submit(_Ack(item.id, handler, outcome))
            else:
                async with uow(self.sessionmaker) as tx:
                    await tx.outbox.fail(
                        item.id,
                        self.id,
                        now=self.clock.now(),
                        error=error,
                        retry=retry,
                        give_up=give_up,
                        reached=reached,
                    )
        except Exception:
            # Its lease runs out (no heartbeat renews it once we let go) and it is delivered again then.
            log.exception("could not record the outcome of outbox item %s (%s)", item.id, item.kind)


@dataclass(frozen=True, slots=True)
class _Ack:
    """A delivered item to acknowledge, with what its delivery left to record (None: nothing)."""

    item_id: int
    handler: Delivery
    outcome: object | None


def _log_failure(task: asyncio.Task[int]) -> None:
    """A batch's own errors are sorted per item; anything escaping that is a bug to see at once."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("outbox batch failed: its items are delivered again when their leases run out", exc_info=exc)


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Wait until any of ``events`` is set, or ``timeout`` seconds."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
