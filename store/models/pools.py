"""Reviewer pools, their members, the versioned changes to them, and delegations of a vote."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import ID, NAME, Base


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
