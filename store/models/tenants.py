"""Tenants, and the credentials their agents use: API keys and the callback signing secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import ID, NAME, Base


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
