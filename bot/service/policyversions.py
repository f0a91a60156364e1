"""The policy versions of the manifests served: recorded at start and on every reload, before serving.

A tenant's manifest file becomes a new stored version (source 'file') when its text differs from the
tenant's latest *file* version; otherwise it is that version. At start every file is compared so; on a
reload only the files whose text changed on this replica's disk are (:class:`bot.policyset.PolicySet`).
What is served is the tenant's latest version of any source: a restart keeps the changes approved in
Slack, and a file edited since wins (``countersign policy export`` is how Slack changes reach git). The
number is carried by the served :class:`TenantPolicy` (``version``), so every request and decision can
record the version in force without reading the database. Replicas recording the same text at once
share one version (:mod:`store.policyversions`), and :class:`PolicyFollower` brings each replica to the
latest version within about a second of another one recording it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.policyset import PolicySet
from policy import TenantPolicy, load_text
from store.models import PolicyVersion
from store.policyversions import NewVersion, manifest_sha256
from store.uow import Tx, uow

log = logging.getLogger(__name__)

# How often each replica reads the tenants' latest version numbers (the issue: converge within seconds).
FOLLOW_SECONDS = 1.0


async def record_versions(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenants: Sequence[TenantPolicy],
    now: datetime,
    *,
    served: Mapping[str, TenantPolicy] | None = None,
    previous: Mapping[str, str] | None = None,
) -> dict[str, TenantPolicy]:
    """Each of ``tenants`` with its ``version`` set, recording a version for each text not stored yet.

    ``served``: the policies served now; a tenant whose text is the one served keeps its version without
    a database round trip (a reload re-reads every file, and most are unchanged).
    ``previous`` (a reload's): each file's text as this replica last read it. A file that moves to a text
    an earlier file version already held, on a replica that had not read the latest file version, is a copy
    catching up late (a config volume synced after another replica's): it is not recorded again as the
    newest, or it would roll every replica back. On a replica that had read the latest, it is a revert.
    """
    stamped: dict[str, TenantPolicy] = {}
    for policy in tenants:
        current = (served or {}).get(policy.tenant)
        if current is not None and current.version is not None and current.text == policy.text:
            stamped[policy.tenant] = replace(policy, version=current.version)
            continue
        async with uow(sessionmaker) as tx:
            last_read = (previous or {}).get(policy.tenant)
            if last_read is not None and await _catching_up(tx, policy, last_read):
                log.warning("manifest %s: this replica's copy is older than the latest version read from it;"
                            " serving the latest", policy.source)  # fmt: skip
                latest = await tx.policy_versions.latest(policy.tenant)
                if latest is not None:
                    stamped[policy.tenant] = version_policy(latest, fallback=current or policy)
                    continue
            new = NewVersion(policy.tenant, policy.text, source="file", file=policy.source)
            recorded = await tx.policy_versions.record(new, now=now)
            latest = await tx.policy_versions.latest(policy.tenant)
        stamped[policy.tenant] = replace(policy, version=recorded.number)
        if latest is not None and latest.number != recorded.number:
            stamped[policy.tenant] = version_policy(latest, fallback=stamped[policy.tenant])
    return stamped


async def _catching_up(tx: Tx, policy: TenantPolicy, last_read: str) -> bool:
    """Whether ``policy``'s file text is an earlier file version's, read where the latest was not read."""
    latest_file = await tx.policy_versions.latest(policy.tenant, source="file")
    if latest_file is None or latest_file.sha256 == manifest_sha256(policy.text):
        return False
    if latest_file.sha256 == manifest_sha256(last_read):
        return False  # this replica had the latest: going back to an older text is a revert, recorded
    return await tx.policy_versions.has_file_text(policy.tenant, manifest_sha256(policy.text))


def version_policy(row: PolicyVersion, *, fallback: TenantPolicy) -> TenantPolicy:
    """The stored version as a served policy; ``fallback`` if its text no longer loads (a version was
    validated before it was stored, so only a newer loader could refuse it: say so and keep serving)."""
    policy, problems = load_text(row.manifest, file=fallback.source or "<manifest>")
    if policy is None or policy.tenant != row.tenant:
        log.error("policy version %s of %s does not load; serving another:\n%s", row.number, row.tenant,
                  "\n".join(str(p) for p in problems))  # fmt: skip
        return fallback
    return replace(policy, version=row.number)


class PolicyFollower:
    """Serves each tenant's latest version as soon as any replica records it: one query per poll."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        *,
        poll_seconds: float = FOLLOW_SECONDS,
        on_served: Callable[[TenantPolicy], None] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.poll_seconds = poll_seconds
        self.on_served = on_served
        self._unloadable: set[tuple[str, int]] = set()  # stored versions this code cannot load

    async def catch_up(self) -> list[str]:
        """Serve every tenant's latest version where a newer one is stored; the tenants that moved."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            numbers = await tx.policy_versions.latest_numbers()
            moved: dict[str, TenantPolicy] = {}
            for tenant, number in numbers.items():
                served = self.policies.tenants.get(tenant)
                if served is None or served.version is None or number <= served.version:
                    continue  # a tenant with no file is not served at all; a version in flight stamps itself
                if (tenant, number) in self._unloadable:
                    continue
                row = await tx.policy_versions.get(tenant, number)
                if row is None:
                    continue
                policy = version_policy(row, fallback=served)
                if policy.version == number:
                    moved[tenant] = policy
                else:  # logged once by version_policy; read again only when a newer version comes
                    self._unloadable.add((tenant, number))
        if moved:
            self.policies.stamp(moved)
            for policy in moved.values():
                log.info("policy of %s: now serving version %s", policy.tenant, policy.version)
                if self.on_served is not None:
                    self.on_served(policy)
        return sorted(moved)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.catch_up()
            except Exception:  # the database away for a moment: serve what is served, read again next poll
                log.warning("could not read the latest policy versions; trying again", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
