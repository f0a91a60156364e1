"""Signed decision receipts and the keys that sign them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base


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
