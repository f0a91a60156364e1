"""The audit chain: sealed events, the head of each chain, events waiting to be sealed, sink cursors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import ID, Base


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
