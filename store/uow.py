"""The unit of work: every repository on one session and one transaction.

::

    async with uow(sessionmaker) as tx:
        added = await tx.votes.add_vote(...)
        won = await tx.requests.transition(...)
        await tx.audit.append(...)
        await tx.outbox.enqueue(...)
    # committed here; an exception anywhere rolls back all of it

On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`store.engine`), so
units of work that write are serialized; pass ``read_only=True`` for long reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store._sql import IdFactory, new_id
from store.audit import AuditLog
from store.cards import CardRepository
from store.delegations import DelegationRepository
from store.engine import SQLITE_BEGIN, write_lock
from store.homes import HomeViewers
from store.outbox import Outbox
from store.policyversions import PolicyVersions
from store.pools import PoolRepository
from store.receipts import ReceiptRepository
from store.requests import RequestRepository
from store.stages import StageRepository
from store.tenants import TenantRepository
from store.votes import VoteRepository


@dataclass
class Tx:
    """The repositories of one unit of work, sharing ``session`` (and so its transaction)."""

    session: AsyncSession
    new_id: IdFactory = new_id
    audit: AuditLog = field(init=False)
    tenants: TenantRepository = field(init=False)
    pools: PoolRepository = field(init=False)
    delegations: DelegationRepository = field(init=False)
    requests: RequestRepository = field(init=False)
    stages: StageRepository = field(init=False)
    cards: CardRepository = field(init=False)
    votes: VoteRepository = field(init=False)
    outbox: Outbox = field(init=False)
    homes: HomeViewers = field(init=False)
    receipts: ReceiptRepository = field(init=False)
    policy_versions: PolicyVersions = field(init=False)

    def __post_init__(self) -> None:
        self.audit = AuditLog(self.session)
        self.tenants = TenantRepository(self.session, self.audit, self.new_id)
        self.pools = PoolRepository(self.session, self.audit, self.new_id)
        self.delegations = DelegationRepository(self.session, self.audit)
        self.requests = RequestRepository(self.session, self.new_id)
        self.stages = StageRepository(self.session)
        self.cards = CardRepository(self.session)
        self.votes = VoteRepository(self.session)
        self.outbox = Outbox(self.session)
        self.homes = HomeViewers(self.session)
        self.receipts = ReceiptRepository(self.session, self.audit)
        self.policy_versions = PolicyVersions(self.session, self.audit)


@asynccontextmanager
async def uow(
    sessionmaker: async_sessionmaker[AsyncSession], *, new_id: IdFactory = new_id, read_only: bool = False
) -> AsyncIterator[Tx]:
    """Open a unit of work; commit when the block exits normally, roll back on an exception.

    Args:
        sessionmaker: from :func:`store.engine.make_sessionmaker`.
        new_id: id generator for new rows (inject a deterministic one in tests).
        read_only: on SQLite, start a deferred transaction that does not take the write lock.

    Yields:
        The :class:`Tx` holding the repositories.
    """
    engine = sessionmaker.kw.get("bind")
    lock = write_lock(engine) if isinstance(engine, AsyncEngine) and not read_only else None
    async with contextlib.AsyncExitStack() as stack:
        if lock is not None:
            await stack.enter_async_context(lock)
        session = await stack.enter_async_context(sessionmaker())
        await stack.enter_async_context(session.begin())
        if read_only:
            # The first connection use procures the connection, so the option is seen by
            # the ``begin`` listener before it emits BEGIN.
            await session.connection(execution_options={SQLITE_BEGIN: "DEFERRED"})
        yield Tx(session, new_id)
