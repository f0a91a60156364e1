"""Policy versions: each tenant's effective policy, numbered from 1 per tenant, with where it came from.

A version is taken by inserting ``latest + 1`` under the primary key (tenant, number), never by
reading and then writing unguarded: two replicas recording the same manifest at once both try the
same number, one insert wins, and the other reads the winner's row and finds its own text there.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import rowcount, upsert_insert
from store.audit import AuditLog
from store.errors import Conflict
from store.models import PolicyVersion

SOURCES = ("file", "slack", "rollback")
POLICY_VERSION_EVENT = "policy.version"
# Other writers taking the next number first, each time with another text: give up after this many.
_ATTEMPTS = 5


def manifest_sha256(text: str) -> str:
    """The digest a version is compared by: of the manifest's text as served (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version to record, if the tenant's latest one holds another text."""

    tenant: str
    manifest: str
    source: str = "file"
    file: str | None = None
    proposed_by: str | None = None
    approved_by: str | None = None
    note: str | None = None  # None: a summary of the lines changed against the previous version

    @property
    def sha256(self) -> str:
        return manifest_sha256(self.manifest)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The version in force after :meth:`PolicyVersions.record`, and whether this call created it."""

    number: int
    created: bool


class PolicyVersions:
    """Policy versions, within a unit of work."""

    def __init__(self, session: AsyncSession, audit: AuditLog) -> None:
        self._session = session
        self._audit = audit

    async def record(self, new: NewVersion, *, now: datetime) -> Recorded:
        """The tenant's latest version if it holds ``new.manifest`` already; otherwise a new version after it,
        audited (``policy.version``) in this unit of work.

        Raises:
            ValueError: an unknown source.
            Conflict: other writers kept taking the next number with other texts.
        """
        if new.source not in SOURCES:
            raise ValueError(f"unknown policy version source {new.source!r}")
        sha = new.sha256
        for _ in range(_ATTEMPTS):
            latest = await self.latest(new.tenant)
            # A file is compared with the latest version read from a file, not with the latest of all: a
            # restart must not undo changes approved in Slack, and a file that did change still wins.
            same = await self.latest(new.tenant, source="file") if new.source == "file" else latest
            if same is not None and same.sha256 == sha:
                return Recorded(same.number, created=False)
            number = latest.number + 1 if latest is not None else 1
            note = new.note if new.note is not None else change_summary(latest, new.manifest)
            values = {
                "tenant": new.tenant, "number": number, "source": new.source, "manifest": new.manifest,
                "sha256": sha, "file": new.file, "proposed_by": new.proposed_by, "approved_by": new.approved_by,
                "created_at": now, "note": note,
            }  # fmt: skip
            # A conflict means another writer took this number meanwhile (on PostgreSQL, once it committed):
            # nothing is written and the loop reads what it wrote.
            stmt = upsert_insert(self._session, PolicyVersion).values(**values)
            result = await self._session.execute(stmt.on_conflict_do_nothing(index_elements=["tenant", "number"]))
            if rowcount(result):
                payload = {
                    "policy_version": number, "source": new.source, "sha256": sha, "file": new.file,
                    "proposed_by": new.proposed_by, "approved_by": new.approved_by, "note": note,
                }  # fmt: skip
                actor = new.approved_by or new.proposed_by or "manifest"
                await self._audit.append(new.tenant, POLICY_VERSION_EVENT, now=now, actor=actor, payload=payload)
                return Recorded(number, created=True)
        raise Conflict(f"could not record a policy version of {new.tenant!r}: others kept recording theirs")

    async def latest(self, tenant: str, *, source: str | None = None) -> PolicyVersion | None:
        """The tenant's newest version (of that ``source``, if given), or None before the first."""
        query = select(PolicyVersion).where(PolicyVersion.tenant == tenant)
        if source is not None:
            query = query.where(PolicyVersion.source == source)
        query = query.order_by(PolicyVersion.number.desc()).limit(1).execution_options(populate_existing=True)
        return (await self._session.scalars(query)).one_or_none()

    async def has_file_text(self, tenant: str, sha256: str) -> bool:
        """Whether a file version of the tenant already held the text with this digest."""
        query = select(PolicyVersion.number).where(
            PolicyVersion.tenant == tenant, PolicyVersion.source == "file", PolicyVersion.sha256 == sha256
        )
        return (await self._session.scalars(query.limit(1))).first() is not None

    async def latest_numbers(self) -> dict[str, int]:
        """Each tenant's newest version number: what every replica polls to converge on the latest."""
        query = select(PolicyVersion.tenant, func.max(PolicyVersion.number)).group_by(PolicyVersion.tenant)
        return {tenant: number for tenant, number in (await self._session.execute(query)).all()}

    async def append(self, new: NewVersion, *, number: int, now: datetime) -> bool:
        """Record ``new`` as version ``number`` exactly, audited; False (nothing written) when another writer
        took that number first. Applying an approved change uses it: the change was made against
        ``number - 1``, and must not land on top of a version it was not made against."""
        previous = await self.get(new.tenant, number - 1) if number > 1 else None
        note = new.note if new.note is not None else change_summary(previous, new.manifest)
        values = {
            "tenant": new.tenant, "number": number, "source": new.source, "manifest": new.manifest,
            "sha256": new.sha256, "file": new.file, "proposed_by": new.proposed_by,
            "approved_by": new.approved_by, "created_at": now, "note": note,
        }  # fmt: skip
        stmt = upsert_insert(self._session, PolicyVersion).values(**values)
        result = await self._session.execute(stmt.on_conflict_do_nothing(index_elements=["tenant", "number"]))
        if not rowcount(result):
            return False
        payload = {
            "policy_version": number, "source": new.source, "sha256": new.sha256, "file": new.file,
            "proposed_by": new.proposed_by, "approved_by": new.approved_by, "note": note,
        }  # fmt: skip
        actor = new.approved_by or new.proposed_by or "manifest"
        await self._audit.append(new.tenant, POLICY_VERSION_EVENT, now=now, actor=actor, payload=payload)
        return True

    async def get(self, tenant: str, number: int) -> PolicyVersion | None:
        return await self._session.get(PolicyVersion, (tenant, number))

    async def history(self, tenant: str) -> Sequence[PolicyVersion]:
        """Every version of the tenant, oldest first."""
        query = select(PolicyVersion).where(PolicyVersion.tenant == tenant).order_by(PolicyVersion.number)
        return (await self._session.scalars(query)).all()


def change_summary(previous: PolicyVersion | None, text: str) -> str:
    """``+3 -1 lines against version 2``: what a new version changes, in a few words."""
    if previous is None:
        return "first version"
    added = removed = 0
    for line in difflib.unified_diff(previous.manifest.splitlines(), text.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"+{added} -{removed} lines against version {previous.number}"
