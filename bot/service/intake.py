"""Agents' side of the use cases: submit a request, read it, wait for it, withdraw it. No Slack, no HTTP.

A submission is recorded in one unit of work with the submissions that arrived with it (group
commit): the request, its first stage (or its decision, when the policy decides at once), its
audit event and the outbox items it causes commit together or not at all, and the agent is
answered only after that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import callback_url_problem
from bot.clock import Clock
from bot.errors import Conflict, InvalidRequest, NotFound
from bot.policyset import PolicySet
from bot.service import render
from bot.service.groupcommit import GroupCommit
from bot.service.models import CreateRequest, RequestOut
from bot.service.receipts import Receipts, with_receipt
from bot.service.recording import Recorded, Submission, read_resource, record
from bot.service.transitions import Transitions
from policy import Status
from store import errors as store_errors
from store.uow import uow

# Seconds between this process's reads for decisions other replicas made on requests waited on here.
DECISION_WATCH = 0.2


class Intake:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        transitions: Transitions,
        draw: Callable[[], float] = random.random,
        receipts: Receipts,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.transitions = transitions
        self.draw = draw
        self.receipts = receipts
        self._writer: GroupCommit[Submission, Recorded] = GroupCommit(self._flush, key=lambda s: s.key)
        # Reads that come together share one (the long polls a batch of decisions wakes at once).
        self._reader: GroupCommit[tuple[str, str], RequestOut] = GroupCommit(self._read_many)
        self._status_reader: GroupCommit[tuple[str, str], Status | None] = GroupCommit(self._statuses)

    async def submit(self, tenant: str, agent: str, body: CreateRequest) -> tuple[RequestOut, bool]:
        """Record an agent's request and decide what happens to it. Returns (resource, created).

        Concurrent submissions share a transaction (group commit); each is answered after it commits.

        Raises:
            InvalidRequest: unknown tenant manifest, callback URL not allowed, action unknown.
            Conflict: idempotency key reused with another body.
        """
        policy = self.policies.get(tenant)
        hosts = policy.manifest.callbacks.allowed_hosts
        if body.callback_url and (problem := callback_url_problem(body.callback_url, hosts)):
            raise InvalidRequest("callback_not_allowed", problem, "callback_url")
        return await self._writer.submit(Submission(tenant, agent, body))

    async def _flush(self, batch: Sequence[Submission]) -> Sequence[Recorded | Exception]:
        try:
            async with self.transitions.unit(self.clock.now()) as unit:
                unit.count(lambda m: m.intake_batch.observe(len(batch)))
                return await record(unit, self.policies, batch, self.draw)
        except store_errors.BatchConflict:
            # Another writer took one of the batch's idempotency keys meanwhile: nothing was written.
            # One at a time, each submission sees the winner's row and replays it (or conflicts) alone.
            return [await self._one(sub) for sub in batch]

    async def _one(self, sub: Submission) -> Recorded | Exception:
        for _ in range(3):
            try:
                async with self.transitions.unit(self.clock.now()) as unit:
                    return (await record(unit, self.policies, [sub], self.draw))[0]
            except store_errors.BatchConflict:
                continue  # the key's row committed after our look-up: the next look-up finds it
            except Exception as exc:
                return exc
        return Conflict("this request's idempotency key is being written by another request; retry")

    async def get(self, tenant: str, request_id: str) -> RequestOut:
        """The request as the agent sees it, with its decision's receipt if it has one or one can be
        issued now (bot.service.receipts). Raises NotFound (also for another tenant's request)."""
        return await self.receipts.attach(await self._reader.submit((tenant, request_id)))

    async def _read_many(self, wanted: Sequence[tuple[str, str]]) -> list[RequestOut | Exception]:
        ids = [request_id for _, request_id in wanted]
        async with uow(self.sessionmaker, read_only=True) as tx:
            rows = await tx.requests.by_ids(ids)
            votes, stages = await tx.votes.votes_of(ids), await tx.stages.stages_of(ids)
            issued = await tx.receipts.issued([i for i, row in rows.items() if row.status.is_final])
            # Cross-pool quorums say who counts for which line: their tenants' pools, read once each.
            quorum = {
                rows[i].tenant for i, opened in stages.items() if i in rows and any(s.line is not None for s in opened)
            }
            pools = {t: await tx.pools.views(t) for t in sorted(quorum)}
        found: list[RequestOut | Exception] = []
        for tenant, request_id in wanted:
            row = rows.get(request_id)
            if row is None or row.tenant != tenant or row.kind != "request":  # a question is no request
                found.append(NotFound(f"no request '{request_id}'"))
            else:
                resource = render.resource(row, votes[request_id], stages[request_id], pools.get(row.tenant))
                found.append(with_receipt(resource, issued.get(request_id)))
        return found

    async def wait(self, tenant: str, request_id: str, seconds: float) -> RequestOut:
        """The request once decided, or as it is after ``seconds``. A decided answer waits up to
        ``receipts.seal_wait`` more for its receipt (the decision's audit event being sealed).

        A pending request costs one cheap read of its status before the wait and the full read after it,
        not two full reads: long polls are most of what agents ask of a busy service.
        """
        with self.transitions.signals.decisions.watching(request_id) as decided:
            status = await self._status_reader.submit((tenant, request_id))
            if status is None:
                raise NotFound(f"no request '{request_id}'")
            if status is Status.PENDING:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(decided.wait(), timeout=seconds)
        return await self.receipts.settle(await self.get(tenant, request_id))

    async def _statuses(self, wanted: Sequence[tuple[str, str]]) -> list[Status | None]:
        """Each (tenant, request id)'s status, None if that tenant has no such request."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = await tx.requests.statuses_of([request_id for _, request_id in wanted], kind="request")
        statuses: list[Status | None] = []
        for tenant, request_id in wanted:
            owner, status = found.get(request_id, ("", None))
            statuses.append(status if owner == tenant else None)
        return statuses

    async def watch_decisions(self, stop: asyncio.Event, *, every: float = DECISION_WATCH) -> None:
        """Until ``stop``: wake the long polls on requests another replica decided, found by one read of
        every request waited on here each ``every`` seconds (this replica's decisions wake them at once)."""
        bus = self.transitions.signals.decisions
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            watched = bus.watched()
            if not watched:
                continue
            async with uow(self.sessionmaker, read_only=True) as tx:
                decided = await tx.requests.decided_among(watched)
            for request_id in decided:
                bus.notify(request_id)

    async def cancel(self, tenant: str, request_id: str) -> RequestOut:
        """The agent withdraws a pending request. Raises Conflict if it is already decided."""
        async with self.transitions.unit(self.clock.now()) as unit:
            try:
                row = await unit.tx.requests.get_for_update(tenant, request_id)
            except store_errors.NotFound as exc:
                raise NotFound(f"no request '{request_id}'") from exc
            if row.kind != "request":
                raise NotFound(f"no request '{request_id}'")
            if row.status.is_final:
                raise Conflict(f"request '{request_id}' is already {row.status.value}")
            row = await self.transitions.cancel(unit, row)
            return await read_resource(unit.tx, row)
