"""The schema: SQLAlchemy 2.0 typed models. One class per table; tables are singular snake_case.

The constraint naming convention keeps names identical on SQLite and PostgreSQL, so one set
of Alembic migrations serves both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from policy.types import Choice, Mode, Risk, Status

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(64)
NAME = String(64)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    SQLite has no time zone type and hands back naive values; storing naive UTC text keeps
    its lexicographic order equal to time order, so range queries work there too.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumType(TypeDecorator[E]):
    """A ``StrEnum`` stored as its plain string value (no native enum: migrations stay simple)."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self._enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self._enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self._enum(value)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class Tenant(Base):
    """One team using the bot. ``config_version`` is the last pool/manifest change number."""

    __tablename__ = "tenant"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    created_at: Mapped[datetime]
    config_version: Mapped[int] = mapped_column(Integer, default=0)


class ApiKey(Base):
    """An agent API key. Only the SHA-256 of the key is stored; ``prefix`` identifies it in lists."""

    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    name: Mapped[str | None] = mapped_column(String(64))  # the agent's, shown on its cards and in the audit


class CallbackSecret(Base):
    """The HMAC secret callbacks are signed with. Kept in clear: signing needs it."""

    __tablename__ = "callback_secret"

    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class Pool(Base):
    """A reviewer pool of a tenant."""

    __tablename__ = "pool"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(NAME)
    channel: Mapped[str | None] = mapped_column(String(64))
    usergroup: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class PoolMember(Base):
    """A member of a pool; ``away`` members still may vote but do not make the pool able to serve."""

    __tablename__ = "pool_member"

    pool_id: Mapped[str] = mapped_column(ForeignKey("pool.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    away: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime]


class ConfigChange(Base):
    """One versioned change to a tenant's pools (gapless ``version`` per tenant)."""

    __tablename__ = "config_change"
    __table_args__ = (UniqueConstraint("tenant", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    pool: Mapped[str | None] = mapped_column(NAME)
    payload: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class PolicyVersion(Base):
    """One numbered version of a tenant's effective policy (from 1, gapless): the manifest as served, and
    where it came from. ``source`` is 'file' (the manifest file as loaded), 'slack' (a change approved in
    Slack) or 'rollback'. The key is the backstop that makes replicas recording one change at once
    record one version (:mod:`store.policyversions`)."""

    __tablename__ = "policy_version"

    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[str] = mapped_column(Text)  # the effective manifest's YAML
    sha256: Mapped[str] = mapped_column(String(64))  # of ``manifest`` (UTF-8)
    file: Mapped[str | None] = mapped_column(Text)  # the manifest file it was read from
    proposed_by: Mapped[str | None] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)  # e.g. what changed against the previous version


class PolicyChange(Base):
    """A policy change proposed in Slack, waiting for a second admin (the two-person rule).

    ``yaml`` is the whole effective manifest the change would serve, made against ``base_version``; it is
    applied only while that version is still the latest (else ``superseded``). ``status`` moves once, from
    'pending' to 'approved', 'refused' or 'superseded', by a conditional update (:mod:`store.policychanges`).
    """

    __tablename__ = "policy_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), index=True)
    base_version: Mapped[int] = mapped_column(Integer)
    yaml: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)  # the change in words
    diff: Mapped[str] = mapped_column(Text)  # unified diff against the base version
    proposed_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    applied_version: Mapped[int | None] = mapped_column(Integer)
    rollback_of: Mapped[int | None] = mapped_column(Integer)


class Delegation(Base):
    """Someone away hands their vote to a delegate until ``until`` (exclusive) or until ended.

    At most one delegation per person is open (``ended_at IS NULL``): the partial unique index is the
    backstop behind ending the previous one in the same transaction. One whose ``until`` has passed is
    no longer in force even while still open (nothing has to run at midnight to end it).
    """

    __tablename__ = "delegation"
    __table_args__ = (
        Index(
            "uq_delegation_open", "tenant", "delegator", unique=True,
            sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL"),
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    delegator: Mapped[str] = mapped_column(String(64))
    delegate: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class Request(Base):
    """An agent's request and its decision. ``version`` grows on every transition (compare-and-set)."""

    __tablename__ = "request"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key"),
        Index("ix_request_tenant_status", "tenant", "status"),
        Index("ix_request_tenant_workflow_id", "tenant", "workflow_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    # 'request' (an action to approve) or 'question' (a person asked for an answer, bot.service.questions):
    # questions ride the same stages, deadlines, cards and outbox, and each API reads only its own kind.
    kind: Mapped[str] = mapped_column(String(16), default="request", server_default="request")
    action: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]]
    params_sha256: Mapped[str] = mapped_column(String(64))
    # Once a reviewer edited the params (edit then approve): the agent's, as asked; ``params`` are the edited.
    original_params: Mapped[dict[str, Any] | None]
    edited_by: Mapped[str | None] = mapped_column(String(64))
    # The tenant's policy version in force when the request was recorded (store.policyversions); None
    # for requests older than policy versions, and for questions.
    policy_version: Mapped[int | None] = mapped_column(Integer)
    context: Mapped[dict[str, Any]]
    sensitive: Mapped[list[Any]]
    status: Mapped[Status] = mapped_column(StrEnumType(Status))
    mode: Mapped[Mode] = mapped_column(StrEnumType(Mode))
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(Text)
    undo_operation: Mapped[str | None] = mapped_column(String(200))
    risk: Mapped[Risk | None] = mapped_column(StrEnumType(Risk))
    stage: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[Status | None] = mapped_column(StrEnumType(Status))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RequestStage(Base):
    """A stage opened for a request: which pool, and when it reminds and expires."""

    __tablename__ = "request_stage"

    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pool: Mapped[str] = mapped_column(NAME)
    channel: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime]
    deadline_at: Mapped[datetime] = mapped_column(index=True)
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    # A cross-pool quorum's stage (``require:``): which line it serves (from 0) and that line's approvals.
    # None for a request with one chain. A quorum's lines each have their own current stage: the unfired one.
    line: Mapped[int | None] = mapped_column(Integer, default=None)
    approvals: Mapped[int | None] = mapped_column(Integer, default=None)
    # An edit moved the request to another route: this stage's pool may no longer vote (its deadline is fired).
    superseded_at: Mapped[datetime | None] = mapped_column(default=None)


class Card(Base):
    """Where a request's card was posted, so the bot can update it in place."""

    __tablename__ = "card"
    __table_args__ = (UniqueConstraint("channel", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class Vote(Base):
    """A counted vote: at most one per person per request (the unique constraint is the backstop)."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("request_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(64))
    choice: Mapped[Choice] = mapped_column(StrEnumType(Choice))
    reason: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    for_user: Mapped[str | None] = mapped_column(String(64))  # the delegator, when a delegate voted for them


class QuestionAnswer(Base):
    """The answer to a question (a request of kind 'question'): one per question, the key is the backstop."""

    __tablename__ = "question_answer"

    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    choice: Mapped[int | None] = mapped_column(Integer)  # the index of the choice clicked; None: free text
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class HomeViewer(Base):
    """Someone who has opened the bot's App Home: only their Home tabs are worth re-publishing."""

    __tablename__ = "home_viewer"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_opened_at: Mapped[datetime]


class AuditHead(Base):
    """The last sealed link of a tenant's chain. Only the sequencer moves it (:mod:`store.audit.sequencer`)."""

    __tablename__ = "audit_head"

    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """One sealed link of the append-only audit chain. ``payload`` is the event's canonical JSON
    text, kept verbatim so both databases hand back exactly what was hashed."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_tenant_request_id", "tenant", "request_id"),)

    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(ID)
    actor: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)


class AuditUnsealed(Base):
    """An audit event committed with its state change and not yet sealed into the chain.

    Writers only insert here (no lock, no head read); the sequencer moves rows into
    ``audit_event`` in ``id`` order, giving them their ``seq`` and hash. ``id`` is the insert
    order (on SQLite the rowid, reused once a row is sealed; rows never wait long).
    """

    __tablename__ = "audit_unsealed"
    __table_args__ = (Index("ix_audit_unsealed_tenant_request_id", "tenant", "request_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name"))
    kind: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(ID)
    actor: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)


class AuditSinkCursor(Base):
    """How far a tenant's sealed chain has been acknowledged by an audit sink (``COUNTERSIGN_AUDIT_SINK``).

    ``sink`` is the sink's URL: a new destination starts from the first event. ``seq`` only moves
    forward (:mod:`store.audit.cursor`).
    """

    __tablename__ = "audit_sink_cursor"

    sink: Mapped[str] = mapped_column(String(512), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    acked_at: Mapped[datetime]


class OutboxItem(Base):
    """A side effect waiting to happen (Slack post/update, agent callback)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_claim", "done_at", "failed_at", "available_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]


class ReceiptKey(Base):
    """A tenant's Ed25519 key for signing decision receipts (docs/receipts.md).

    ``private_key`` is the raw 32-byte seed, base64url: anyone who reads this table can forge receipts,
    as anyone who writes the database can rewrite unsealed audit events. ``retired_at`` is set when a
    newer key takes over; a retired key stays listed until the last receipt it signed has expired.
    """

    __tablename__ = "receipt_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"), index=True)
    private_key: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class Receipt(Base):
    """The signed receipt of a request's decision, issued once (when its audit event is sealed) and kept."""

    __tablename__ = "receipt"
    __table_args__ = (Index("ix_receipt_kid_expires_at", "kid", "expires_at"),)

    request_id: Mapped[str] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenant.name", ondelete="CASCADE"))
    kid: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the receipt's JSON, as issued
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
