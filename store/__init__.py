"""Persistence: schema, migrations, repositories, the audit chain and the outbox.

Public API::

    create_engine(url) -> AsyncEngine            make_sessionmaker(engine) -> async_sessionmaker
    await upgrade(url_or_engine)                 Alembic migrations to head (idempotent)
    async with uow(sessionmaker) as tx:          one transaction; tx.tenants, tx.pools,
        ...                                      tx.requests, tx.audit, tx.outbox
    await Sequencer(engine, now=...).run(stop)   seal audit events into the chains (one at a time)
    await verify(engine, tenant) -> VerifyResult walk a tenant's audit chain
    async for event in export(engine, tenant):   stream a tenant's audit chain
"""

from store.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    Sequencer,
    VerifyResult,
    event_hash,
    export,
    format_at,
    verify,
)
from store.engine import create_engine, make_sessionmaker
from store.errors import (
    Conflict,
    DuplicateVote,
    IdempotencyConflict,
    InvalidName,
    MigrationError,
    NotFound,
    PoolExists,
    StoreError,
    TenantUnknown,
)
from store.migrate import current_revision, head_revision, upgrade
from store.models import ApiKey, Card, ConfigChange, OutboxItem, Request, RequestStage, Vote
from store.outbox import FailOutcome, ItemState, Outbox, OutboxEntry, RetryPolicy
from store.pools import PoolRepository, PoolSeed
from store.recording import NewRequest
from store.requests import RequestRepository
from store.stages import DueStage
from store.tenants import IssuedKey, TenantRepository, check_name, hash_key
from store.uow import Tx, uow

__all__ = [
    "GENESIS_HASH",
    "ApiKey",
    "AuditLog",
    "AuditRecord",
    "Card",
    "ConfigChange",
    "Conflict",
    "DueStage",
    "DuplicateVote",
    "FailOutcome",
    "IdempotencyConflict",
    "InvalidName",
    "IssuedKey",
    "ItemState",
    "MigrationError",
    "NewRequest",
    "NotFound",
    "Outbox",
    "OutboxEntry",
    "OutboxItem",
    "PoolExists",
    "PoolRepository",
    "PoolSeed",
    "Request",
    "RequestRepository",
    "RequestStage",
    "RetryPolicy",
    "Sequencer",
    "StoreError",
    "TenantRepository",
    "TenantUnknown",
    "Tx",
    "VerifyResult",
    "Vote",
    "check_name",
    "create_engine",
    "current_revision",
    "event_hash",
    "export",
    "format_at",
    "hash_key",
    "head_revision",
    "make_sessionmaker",
    "uow",
    "upgrade",
    "verify",
]
