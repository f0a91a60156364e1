"""A tenant's policy versions, and the policy changes proposed in Slack."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base


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
